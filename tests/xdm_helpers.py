"""Helpers for the XDM and signature tests: official example documents, ZIP surgery."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

EXAMPLES = ("eP-MED-DM_2024.01_PosoStruct", "eDISP-MED_2024.01", "BIO-CR-BIO_2024.01_TSH_1")
PRESCRIPTION, DISPENSATION, LAB = EXAMPLES
META = "IHE_XDM/SUBSET01/METADATA.XML"


def example_zip(shared_dir: Path, name: str) -> bytes:
    return (shared_dir / "xdm-examples" / name / "IHE_XDM.ZIP").read_bytes()


def example_doc(shared_dir: Path, name: str) -> bytes:
    """The CDA document of an official example, exact bytes (BOM and CRLF included)."""
    with zipfile.ZipFile(io.BytesIO(example_zip(shared_dir, name))) as zf:
        return zf.read("IHE_XDM/SUBSET01/DOC0001.XML")


def entries(package: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(package)) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def rezip(package: bytes, changes: dict[str, bytes | None] | None = None,
          extra: list[tuple[str, bytes]] | None = None) -> bytes:
    """The package with entries replaced (bytes) or removed (None), and `extra` added."""
    changes = changes or {}
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(package)) as src, \
            zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename in changes:
                data = changes[info.filename]
                if data is None:
                    continue
                dst.writestr(info.filename, data)
            else:
                dst.writestr(info, src.read(info))
        for name, data in extra or []:
            dst.writestr(name, data)
    return buf.getvalue()


def lie_about_size(package: bytes, name: str, size: int) -> bytes:
    """Patch the declared uncompressed size of entry `name` in the local header and the
    central directory (what a ZIP bomb does to slip past size checks)."""
    data = bytearray(package)
    raw = name.encode()
    pos = 0
    while True:
        pos = data.find(b"PK\x03\x04", pos)
        if pos < 0:
            break
        n = struct.unpack_from("<H", data, pos + 26)[0]
        if bytes(data[pos + 30:pos + 30 + n]) == raw:
            struct.pack_into("<I", data, pos + 22, size)
        pos += 4
    pos = 0
    while True:
        pos = data.find(b"PK\x01\x02", pos)
        if pos < 0:
            break
        n = struct.unpack_from("<H", data, pos + 28)[0]
        if bytes(data[pos + 46:pos + 46 + n]) == raw:
            struct.pack_into("<I", data, pos + 24, size)
        pos += 4
    return bytes(data)


def set_flag(package: bytes, name: str, bit: int) -> bytes:
    """Set a general-purpose flag bit of entry `name` in both headers (e.g. 0x1: encrypted)."""
    data = bytearray(package)
    raw = name.encode()
    for sig, name_len_at, name_at, flag_at in ((b"PK\x03\x04", 26, 30, 6),
                                               (b"PK\x01\x02", 28, 46, 8)):
        pos = 0
        while (pos := data.find(sig, pos)) >= 0:
            n = struct.unpack_from("<H", data, pos + name_len_at)[0]
            if bytes(data[pos + name_at:pos + name_at + n]) == raw:
                flags = struct.unpack_from("<H", data, pos + flag_at)[0]
                struct.pack_into("<H", data, pos + flag_at, flags | bit)
            pos += 4
    return bytes(data)


def luhn_rpps(n: int) -> str:
    """An RPPS number (11 digits, Luhn) built from `n`."""
    body = f"1010{n:06d}"
    for check in "0123456789":
        digits = body + check
        total = 0
        for i, ch in enumerate(reversed(digits)):
            d = int(ch) * (2 if i % 2 else 1)
            total += d - 9 if d > 9 else d
        if total % 10 == 0:
            return digits
    raise AssertionError("unreachable")


def register_professional(config, email: str, n: int = 1, structure: str | None = None,
                          name: str = "PIOU"):
    """Add a doctor's mailbox to the trust directory of `config`."""
    from gateway.directory import Professional, open_directory

    return open_directory(config).add_professional(
        email,
        Professional(rpps=luhn_rpps(n), adeli=None, family_name=name, given_name="Romain",
                     profession="10", specialty="SM26", structure=structure),
    )


def register_practice(config, email: str):
    from gateway.directory import Organisation, OrganisationKind, open_directory

    return open_directory(config).add_organisation(
        email,
        Organisation(finess=None, siret="82512345000017", name="Cabinet du Dr JOLI",
                     kind=OrganisationKind.PRACTICE),
    )


def fix_metadata(package: bytes, path: str, data: bytes) -> bytes:
    """Replace a file and update its hash and size in METADATA.XML, as an attacker would."""
    from gateway.xdm.header import sha1_hex

    files = entries(package)
    old = files[path]
    meta = files[META].replace(sha1_hex(old).encode(), sha1_hex(data).encode())
    meta = meta.replace(f"<rim:Value>{len(old)}</rim:Value>".encode(),
                        f"<rim:Value>{len(data)}</rim:Value>".encode())
    return rezip(package, {path: data, META: meta})
