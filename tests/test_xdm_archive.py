"""The ZIP writer of XDM packages (gateway.xdm.archive): archives any ZIP reader opens, the same
bytes zipfile writes where no member holds base64, and base64 coded cheaply without losing size."""

from __future__ import annotations

import base64
import io
import subprocess
import zipfile
import zlib

from conftest import require_tool
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.documents.build import build_prescription
from gateway.documents.samples import prescription, sample_pdf, sample_png
from gateway.xdm import pack, read_package
from gateway.xdm.archive import MIN_B64_RUN, deflate, write_zip


def _zipfile_writer(files: list[tuple[str, bytes]]) -> bytes:
    """What gateway.xdm.package wrote with zipfile before it had its own writer."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            if name.endswith("/"):
                info.external_attr = 0o40755 << 16 | 0x10
                zf.writestr(info, b"")
            else:
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, data, compresslevel=1)
    return buf.getvalue()


def _cda() -> bytes:
    return build_prescription(prescription(), sample_pdf(), sample_png())


def _level1(data: bytes) -> bytes:
    c = zlib.compressobj(1, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def test_same_bytes_as_zipfile_without_base64():
    files = [
        ("README.TXT", b"Emetteur :\r\n" * 20),
        ("IHE_XDM/", b""),
        ("IHE_XDM/SUBSET01/", b""),
        ("IHE_XDM/SUBSET01/METADATA.XML", b"<a>" + b"<b x='1'/>" * 500 + b"</a>"),
        ("IHE_XDM/SUBSET01/EMPTY.XML", b""),
        ("IHE_XDM/SUBSET01/CR\u00c9\u00c9.XML", bytes(range(256)) * 8),  # a UTF-8 name
    ]
    assert write_zip(files) == _zipfile_writer(files)


def test_a_prescription_package_reads_back_everywhere(tmp_path):
    cda = _cda()
    data = pack([cda])
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None  # every CRC-32 checked
        assert zf.read("IHE_XDM/SUBSET01/DOC0001.XML") == cda
        assert [i.filename for i in zf.infolist()] == [
            "README.TXT", "INDEX.HTM", "IHE_XDM/", "IHE_XDM/SUBSET01/",
            "IHE_XDM/SUBSET01/DOC0001.XML", "IHE_XDM/SUBSET01/METADATA.XML"]
        info = zf.getinfo("IHE_XDM/SUBSET01/DOC0001.XML")
        assert info.compress_type == zipfile.ZIP_DEFLATED
        assert info.date_time == (1980, 1, 1, 0, 0, 0)
        assert zf.getinfo("IHE_XDM/").is_dir()
    assert read_package(data).documents[0].data == cda
    path = tmp_path / "IHE_XDM.zip"
    path.write_bytes(data)
    out = subprocess.run([require_tool("unzip"), "-t", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "No errors detected" in out.stdout


def test_base64_is_coded_apart_and_the_size_kept():
    cda = _cda()
    packed = deflate(cda)
    assert zlib.decompress(packed, -15) == cda
    # The PDF's base64 was found and coded Huffman-only: the stream differs from level 1 in one
    # go, and is hardly larger (measured +0.5%; a stored copy would be ~30% larger).
    whole = _level1(cda)
    assert packed != whole
    assert len(packed) <= len(whole) * 1.02


_B64 = st.binary(min_size=0, max_size=3 * MIN_B64_RUN).map(base64.b64encode)
_XML = st.sampled_from([
    b"<x>", b"</x>", b'<value representation="B64">', b'representation="B64"',
    b'<text representation="B64" mediaType="image/png">', b">", b"<", b"",
    b"<?xml version='1.0'?>\r\n", "é€".encode(),
])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(_XML, _B64, st.binary(max_size=300)), max_size=12))
def test_any_split_decompresses_to_the_same_bytes(parts):
    data = b"".join(parts)
    assert zlib.decompress(deflate(data), -15) == data
    with zipfile.ZipFile(io.BytesIO(write_zip([("A/", b""), ("A/B.XML", data)]))) as zf:
        assert zf.read("A/B.XML") == data
