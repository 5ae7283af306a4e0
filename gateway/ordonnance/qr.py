"""The QR code that carries the e-prescription identifier, and nothing else.

The pharmacist's scanner reads the identifier and fetches the prescription from the registry, so
the code holds exactly the 18 characters (no spaces, no URL, no prefix). An identifier uses only
0-9A-Z, which QR's alphanumeric mode encodes compactly: a version 1 symbol (21x21) holds it at
error-correction level M, leaving large modules that survive a crumpled paper or a phone screen.
"""

from __future__ import annotations

import functools
import struct
import zlib

from gateway.errors import GatewayError
from gateway.ordonnance.qrsymbol import encode
from gateway.prescriptions.identifier import check_identifier


class OrdonnanceError(GatewayError):
    """The prescription cannot be rendered as an ordonnance (e.g. no valid identifier)."""


def checked_identifier(identifier: str | None) -> str:
    """The identifier in its canonical form (no spaces), or OrdonnanceError saying why not."""
    if not identifier:
        raise OrdonnanceError("the prescription has no e-prescription identifier to print")
    result = check_identifier(identifier)
    if not result.ok:
        raise OrdonnanceError(f"identifier {result.identifier!r} is not valid: {result.reason}")
    return result.identifier


def symbol(identifier: str) -> tuple[bytes, ...]:
    """The symbol for `identifier` (checked and normalised first): dark modules (1) row by row,
    without the quiet zone. Version 1-M, alphanumeric (qrsymbol.py: the same symbol segno makes
    with error="m", mode="alphanumeric", boost_error=False)."""
    return _symbol(checked_identifier(identifier))


@functools.lru_cache(maxsize=64)
def _symbol(ident: str) -> tuple[bytes, ...]:
    # A prescription needs the symbol twice (the PDF's vectors, the CDA's PNG): the second
    # caller gets the first one's.
    return tuple(bytes(row) for row in encode(ident))


def qr_png(identifier: str, *, scale: int = 8, border: int = 4) -> bytes:
    """A black-on-white PNG of the QR code, for the CDA's 2D-code section.

    The default gives (21 + 2*4) * 8 = 232 pixels square, about 400 bytes: large enough to scan
    from a screen, small enough to embed in base64. `border` is the quiet zone in modules (the QR
    standard asks for 4).
    """
    if not (1 <= scale <= 100 and 0 <= border <= 20):
        raise OrdonnanceError("the QR scale is 1 to 100 pixels per module, the border 0 to 20")
    return _png(symbol(identifier), scale, border)


def _png(matrix: tuple[bytes, ...], scale: int, border: int) -> bytes:
    """A 1-bit greyscale PNG (0 = black) of the modules, each `scale` pixels square.

    Written here rather than with segno's `save(kind="png")`, whose pure-Python scanlines cost
    1.2 ms per prescription; this builds each module row once as an integer and repeats it."""
    size = (len(matrix) + 2 * border) * scale
    dark, light = "0" * scale, "1" * scale
    margin = light * border
    pad = "1" * (-size % 8)  # rows are whole bytes
    blank = int("1" * size + pad, 2).to_bytes((size + 7) // 8, "big")
    rows = [blank] * border
    for row in matrix:
        bits = margin + "".join(dark if v else light for v in row) + margin + pad
        rows.append(int(bits, 2).to_bytes((size + 7) // 8, "big"))
    rows += [blank] * border
    raw = b"".join(b"\x00" + r for r in rows for _ in range(scale))  # filter 0 per scanline

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(
            ">I", zlib.crc32(tag + data))

    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
