import os
import stat
import time

import pytest

from gateway.store.maildir import (
    UnsafeAddress,
    deliver,
    deliver_many,
    folder_path,
    mailbox_path,
)


def test_deliver_is_in_new_with_size_and_private(tmp_path):
    inbox = mailbox_path(tmp_path, "Dr.Martin@Example.localhost")
    assert inbox == tmp_path / "example.localhost" / "dr.martin"
    path = deliver(inbox, b"Subject: hi\r\n\r\nbody\r\n")
    assert path.parent == inbox / "new"
    assert path.read_bytes() == b"Subject: hi\r\n\r\nbody\r\n"
    assert path.name.endswith(",S=21")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(inbox / "tmp") == []


def test_deliver_many_unique_names(tmp_path):
    a = mailbox_path(tmp_path, "a@x.localhost")
    b = folder_path(mailbox_path(tmp_path, "b@x.localhost"), "Sent")
    paths = deliver_many([(a, b"1"), (a, b"2"), (b, b"3")])
    assert len({p.name for p in paths}) == 3
    assert [p.read_bytes() for p in paths] == [b"1", b"2", b"3"]
    assert paths[2].parent == tmp_path / "x.localhost" / "b" / ".Sent" / "new"


@pytest.mark.parametrize(
    "address", ["../../etc@x.localhost", "a/b@x.localhost", "a@../x", "nodomain", "a@", ".a@x.y"]
)
def test_unsafe_addresses_refused(tmp_path, address):
    with pytest.raises(UnsafeAddress):
        mailbox_path(tmp_path, address)


def test_clean_tmp_removes_only_what_is_older(tmp_path):
    import os

    from gateway.store.maildir import STALE_TMP_SECONDS, clean_tmp

    inbox = tmp_path / "example.test" / "alice"
    for folder in (inbox, inbox / ".Sent"):
        for sub in ("tmp", "new", "cur"):
            (folder / sub).mkdir(parents=True)
    old = inbox / "tmp" / "old"
    old.write_bytes(b"x")
    os.utime(old, (1, time.time() - STALE_TMP_SECONDS - 10))
    fresh = inbox / ".Sent" / "tmp" / "fresh"
    fresh.write_bytes(b"x")
    kept = inbox / "new" / "kept"
    kept.write_bytes(b"x")
    assert clean_tmp(tmp_path, time.time() - STALE_TMP_SECONDS) == 1
    assert not old.exists() and fresh.exists() and kept.exists()
    assert clean_tmp(tmp_path, time.time() + 1) == 1
    assert not fresh.exists() and kept.exists()
    assert clean_tmp(tmp_path / "missing", time.time()) == 0
