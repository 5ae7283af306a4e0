"""The national MSSanté whitelist (liste blanche): a pure, hostile-input-safe parser.

Format: namespace https://listeblanche.mssante.fr/schema, root `ListeBlancheMSSante` with
`DateDeGeneration` and `ListeDomaines/Domaine` (Nom, Description, DNCertificatOperateur,
ResponsableContact, SupportContact, DateMAJ). A domain served by several operator servers appears
once per certificate (the 2025-03-13 snapshot has 619 entries for 516 domains): entries are merged
into one domain accepting every listed DN, the most recent entry giving description and contacts.

Safety: lxml with no DTD loading, no entity resolution, no network and huge_tree off, and any
DOCTYPE is refused outright (the real list has none, so one can only be an attack).

Completeness: the real snapshot ends without its closing root tag, so a document cut short must
be told apart from that one tolerated defect. It is decided from the bytes, never from the
parser's recovery (libxml2 reports every element still open as closed at end of file, and how it
does so changes between lxml releases): the raw document must hold the closing `</ListeDomaines>`
followed by nothing but white space and the start of the root's closing tag, and the document cut
right after that `</ListeDomaines>` and given its closing root tag must then be well-formed XML
in its own right. Anything else that is not well-formed is refused, so a list cut in the middle
of its domains can never remove the domains that are missing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, cast

from lxml import etree

from gateway.directory.validate import InvalidField, domain_name
from gateway.errors import GatewayError
from gateway.texts import t

NS = "https://listeblanche.mssante.fr/schema"
MAX_SIZE = 64 * 1024 * 1024
# A re-import removing more than this share of the peer domains is refused unless asked for: the
# national list loses a handful of domains a month, a bad file loses hundreds at once.
MAX_REMOVED_SHARE = 0.10
# The closing tag of the domain list as written in the raw bytes (any namespace prefix).
_LIST_CLOSE = re.compile(rb"</(?:[A-Za-z_][\w.-]*:)?ListeDomaines[ \t\r\n]*>")
_XML_SPACE = b" \t\r\n"


class InvalidWhitelist(GatewayError):
    """The file is not a whitelist we can trust (malformed, hostile, truncated, wrong format)."""


@dataclass(frozen=True)
class WhitelistDomain:
    name: str
    operator_dns: tuple[str, ...]  # most recent entry first
    description: str | None = None
    contacts: dict[str, str] = field(default_factory=dict)
    updated: str | None = None


@dataclass(frozen=True)
class Whitelist:
    generated: str | None
    entries: int  # <Domaine> elements read (one per domain and operator certificate)
    domains: dict[str, WhitelistDomain]
    warnings: tuple[str, ...] = ()


def _q(name: str) -> str:
    return f"{{{NS}}}{name}"


def _text(el: etree._Element, name: str) -> str | None:
    v = el.findtext(_q(name))
    v = " ".join(v.split()) if v else None
    return v or None


def _parser_options() -> dict[str, Any]:
    return {
        "resolve_entities": False,
        "load_dtd": False,
        "no_network": True,
        "huge_tree": False,
        "remove_comments": True,
        "remove_pis": True,
    }


def _refuse_dtd(root: etree._Element, source: str) -> None:
    docinfo = root.getroottree().docinfo
    if getattr(docinfo, "doctype", "") or docinfo.internalDTD is not None:
        raise InvalidWhitelist(t(
            "{file}: a DOCTYPE/DTD is not allowed in the whitelist (entities refused)",
            file=source))


def _not_well_formed(source: str, exc: etree.XMLSyntaxError) -> InvalidWhitelist:
    # libxml2 may quote the offending bytes (a newline...): keep the message on one line
    message = " ".join(str(exc.msg).split()).encode("ascii", "backslashreplace").decode()
    return InvalidWhitelist(t("{file}: not well-formed XML: {detail}", file=source,
                              detail=message))


def _cut_root(data: bytes) -> etree._Element | None:
    """The root element of `data` if `data` is a well-formed start cut short; else None.

    Used only to choose the message: a pull parser raises on the first error it meets in the
    bytes fed, and only at close() for data that merely stops too early.
    """
    parser = etree.XMLPullParser(events=("start",), **_parser_options())
    try:
        parser.feed(data)
    except etree.XMLSyntaxError:
        return None
    for _event, item in parser.read_events():
        return cast(etree._Element, item)
    return None


def _completed_list(data: bytes, root: etree._Element) -> bytes | None:
    """`data` up to its last `</ListeDomaines>`, closed with the root's tag, when nothing but
    white space and the start of that root tag follows it; else None."""
    matches = list(_LIST_CLOSE.finditer(data))
    if not matches:
        return None
    last = matches[-1]
    qname = etree.QName(root).localname
    if root.prefix:
        qname = f"{root.prefix}:{qname}"
    closing = f"</{qname}>".encode()
    if not closing.startswith(data[last.end() :].strip(_XML_SPACE)):
        return None
    return data[: last.end()] + closing


def _parse_tree(data: bytes, source: str) -> tuple[etree._Element, list[str]]:
    """The document's root, and a warning when it is the tolerated cut after the domain list."""
    parser = etree.XMLParser(**_parser_options())
    try:
        return etree.fromstring(data, parser), []
    except etree.XMLSyntaxError as exc:
        error = exc
    cut_root = _cut_root(data)
    if cut_root is None:
        raise _not_well_formed(source, error) from None
    _refuse_dtd(cut_root, source)
    if not _LIST_CLOSE.search(data):
        raise InvalidWhitelist(t(
            "{file}: the file is truncated before the end of the domain list: refused"
            " (importing it would remove the domains that are missing)", file=source))
    completed = _completed_list(data, cut_root)
    if completed is None:  # something else than the closing root tag follows the list
        raise _not_well_formed(source, error) from None
    try:
        root = etree.fromstring(completed, parser)
    except etree.XMLSyntaxError as exc:  # e.g. that `</ListeDomaines>` is inside a comment
        raise _not_well_formed(source, exc) from None
    return root, [
        t("{file}: the file ends without </ListeBlancheMSSante>; the domain list itself is"
          " complete", file=source)
    ]


def parse_whitelist(data: bytes, source: str = "whitelist") -> Whitelist:
    """Parse the whitelist XML in `data`; raises InvalidWhitelist with a one-line reason."""
    if len(data) > MAX_SIZE:
        raise InvalidWhitelist(t("{file}: larger than {mb} MB: refused", file=source,
                                 mb=MAX_SIZE // (1024 * 1024)))
    root, warnings = _parse_tree(data, source)
    _refuse_dtd(root, source)
    if root.tag != _q("ListeBlancheMSSante"):
        raise InvalidWhitelist(t(
            "{file}: root element is {tag}, not ListeBlancheMSSante in namespace {ns}",
            file=source, tag=root.tag, ns=NS))
    domain_list = root.find(_q("ListeDomaines"))
    if domain_list is None:
        raise InvalidWhitelist(t("{file}: no ListeDomaines element", file=source))
    raw = domain_list.findall(_q("Domaine"))
    generated = _text(root, "DateDeGeneration")
    return Whitelist(generated, len(raw), _merge(raw, warnings), tuple(warnings))


def _merge(raw: list[etree._Element], warnings: list[str]) -> dict[str, WhitelistDomain]:
    by_name: dict[str, list[tuple[str, etree._Element]]] = {}
    for el in raw:
        nom = _text(el, "Nom")
        try:
            name = domain_name(nom or "", "Nom")
        except InvalidField as exc:
            warnings.append(t("entry skipped: {reason}", reason=exc.text))
            continue
        if not _text(el, "DNCertificatOperateur"):
            warnings.append(t("entry skipped: {name} has no DNCertificatOperateur", name=name))
            continue
        by_name.setdefault(name, []).append((_text(el, "DateMAJ") or "", el))
    out: dict[str, WhitelistDomain] = {}
    for name, entries in by_name.items():
        entries.sort(key=lambda e: e[0], reverse=True)  # ISO-8601 UTC strings sort by time
        newest = entries[0][1]
        dns: list[str] = []
        for _, el in entries:
            dn = _text(el, "DNCertificatOperateur")
            if dn and dn not in dns:
                dns.append(dn)
        contacts = {
            key: value
            for key, tag in (("responsable", "ResponsableContact"), ("support", "SupportContact"))
            if (value := _text(newest, tag))
        }
        out[name] = WhitelistDomain(
            name=name,
            operator_dns=tuple(dns),
            description=_text(newest, "Description"),
            contacts=contacts,
            updated=entries[0][0] or None,
        )
    return out
