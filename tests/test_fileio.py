import stat

import pytest

from gateway.errors import GatewayError
from gateway.fileio import write_atomic, write_synced, write_user_file


def test_write_synced_creates_private_and_refuses_existing(tmp_path):
    path = tmp_path / "m"
    write_synced(path, b"x" * 1_000_000)
    assert path.read_bytes() == b"x" * 1_000_000
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        write_synced(path, b"other")
    assert path.read_bytes() == b"x" * 1_000_000  # untouched
    write_synced(path, b"replaced", exclusive=False)
    assert path.read_bytes() == b"replaced"


def test_write_atomic_replaces_whole_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "f.pem"
    write_atomic(path, b"one")
    write_atomic(path, b"two", 0o600)
    assert path.read_bytes() == b"two"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["f.pem"]


def test_write_user_file_errors_are_one_line(tmp_path, capsysbinary):
    with pytest.raises(GatewayError, match="folder .* does not exist"):
        write_user_file(tmp_path / "nope" / "out.pdf", b"x")
    (tmp_path / "dir").mkdir()
    with pytest.raises(GatewayError, match="cannot write"):
        write_user_file(tmp_path / "dir", b"x")  # a folder where the file should go
    write_user_file("-", b"to stdout")
    assert capsysbinary.readouterr().out == b"to stdout"
