"""Distinguished names as strings, comparable with the whitelist's `DNCertificatOperateur`.

The national whitelist writes an operator's certificate subject in RFC 4514 order (most specific
first, comma-separated, no space), e.g. `CN=mss.example.fr,OU=34436855730003,O=ENOVACOM,
ST=Bouches-du-Rhône (13),C=FR`. `subject_dn` renders a certificate's subject the same way
(cryptography's `rfc4514_string`, with the usual short names for the attributes it would otherwise
print as dotted OIDs). `normalise_dn` turns any of the spellings met in practice into one
comparable key:
- attribute types upper-cased, with aliases folded (`S`→`ST`, `E`/`EMAIL`→`EMAILADDRESS`, dotted
  OIDs of common attributes → their short name);
- values unescaped (RFC 4514 `\\,` and `\\XX`), surrounding spaces dropped, inner runs of spaces
  collapsed, compared case-insensitively (casefold), as directory string matching does;
- separators `,` or `, ` and the OpenSSL "oneline" form `/C=FR/O=x/CN=y` (most general first,
  which is reversed) are accepted.
The order of the RDNs matters (it does in X.500), multi-valued RDNs (`+`) are sorted.
"""

from __future__ import annotations

import re

from cryptography import x509
from cryptography.x509.oid import NameOID

# Short names for attributes cryptography would render as dotted OIDs.
_OVERRIDES: dict[x509.ObjectIdentifier, str] = {
    NameOID.SERIAL_NUMBER: "serialNumber",
    NameOID.SURNAME: "SN",
    NameOID.GIVEN_NAME: "GN",
    NameOID.EMAIL_ADDRESS: "emailAddress",
    NameOID.TITLE: "title",
    NameOID.ORGANIZATION_IDENTIFIER: "organizationIdentifier",
}

_ALIASES = {
    "S": "ST",
    "E": "EMAILADDRESS",
    "EMAIL": "EMAILADDRESS",
    "2.5.4.3": "CN",
    "2.5.4.4": "SN",
    "2.5.4.5": "SERIALNUMBER",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.12": "TITLE",
    "2.5.4.42": "GN",
    "GIVENNAME": "GN",
    "SURNAME": "SN",
    "2.5.4.97": "ORGANIZATIONIDENTIFIER",
    "1.2.840.113549.1.9.1": "EMAILADDRESS",
    "0.9.2342.19200300.100.1.1": "UID",
    "USERID": "UID",
}


def subject_dn(name: x509.Name) -> str:
    """A certificate name as the whitelist writes it: RFC 4514, most specific RDN first."""
    return name.rfc4514_string(_OVERRIDES)


def _split(text: str, seps: str) -> list[str]:
    """Split on unescaped separators (a backslash escapes the next character)."""
    parts: list[str] = []
    buf: list[str] = []
    escaped = False
    for ch in text:
        if escaped:
            buf.append("\\" + ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in seps:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    if escaped:
        buf.append("\\")
    parts.append("".join(buf))
    return parts


_HEX = re.compile(r"\\([0-9A-Fa-f]{2})")


def _unescape(value: str) -> str:
    if value.startswith("#"):
        return value.casefold()  # BER-encoded value: compare as hex text
    # \XX pairs are UTF-8 bytes; decode runs of them together.
    raw = bytearray()
    i = 0
    while i < len(value):
        m = _HEX.match(value, i)
        if m:
            raw.append(int(m.group(1), 16))
            i = m.end()
        elif value[i] == "\\" and i + 1 < len(value):
            raw += value[i + 1].encode()
            i += 2
        else:
            raw += value[i].encode()
            i += 1
    return raw.decode("utf-8", errors="replace")


def _attribute(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"not a distinguished name attribute: {text.strip()!r}")
    key = key.strip().upper()
    key = _ALIASES.get(key, key)
    # Unescape before trimming: an escaped trailing space ("x\\ ") must not leave a backslash.
    value = " ".join(_unescape(value.lstrip()).split()).casefold()
    return key, value


def normalise_dn(dn: str) -> str:
    """The comparable key of a DN string (raises ValueError when it is not a DN)."""
    text = dn.lstrip()  # not rstrip: the last value may end with an escaped space
    if not text.strip():
        raise ValueError("empty distinguished name")
    if text.startswith("/"):
        # OpenSSL oneline form, most general first: reverse into RFC 4514 order.
        rdns = list(reversed([p for p in _split(text[1:], "/") if p.strip()]))
    else:
        rdns = _split(text, ",;")
    out = []
    for rdn in rdns:
        attrs = sorted(_attribute(a) for a in _split(rdn, "+"))
        out.append("+".join(f"{k}={v}" for k, v in attrs))
    return ",".join(out)


def dn_matches(a: str | x509.Name, b: str | x509.Name) -> bool:
    """Whether two DNs (strings in any accepted spelling, or x509 names) are the same."""
    try:
        na = normalise_dn(subject_dn(a) if isinstance(a, x509.Name) else a)
        nb = normalise_dn(subject_dn(b) if isinstance(b, x509.Name) else b)
    except ValueError:
        return False
    return na == nb
