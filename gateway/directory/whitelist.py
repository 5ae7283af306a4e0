"""The national MSSanté whitelist (liste blanche): a pure, hostile-input-safe parser.

Format: namespace https://listeblanche.mssante.fr/schema, root `ListeBlancheMSSante` with
`DateDeGeneration` and `ListeDomaines/Domaine` (Nom, Description, DNCertificatOperateur,
ResponsableContact, SupportContact, DateMAJ). A domain served by several operator servers appears
once per certificate (the 2025-03-13 snapshot has 619 entries for 516 domains): entries are merged
into one domain accepting every listed DN, the most recent entry giving description and contacts.

Safety: lxml with no DTD loading, no entity resolution, no network and huge_tree off, and any
DOCTYPE is refused outright (the real list has none, so one can only be an attack). The real
snapshot ends without its closing root tag; that is tolerated only once `</ListeDomaines>` has
been read: a list cut before that point would silently remove domains on re-import, so it is
refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from lxml import etree

from gateway.directory.validate import InvalidField, domain_name
from gateway.errors import GatewayError

NS = "https://listeblanche.mssante.fr/schema"
MAX_SIZE = 64 * 1024 * 1024
_XML_ERR_TAG_NOT_FINISHED = 77  # libxml2: "Premature end of data in tag"


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
        raise InvalidWhitelist(
            f"{source}: a DOCTYPE/DTD is not allowed in the whitelist (entities refused)"
        )


def _truncated_root(data: bytes, source: str) -> etree._Element:
    """The root of a document cut short, if its domain list is complete; else refuse it."""
    parser = etree.XMLPullParser(events=("start", "end"), **_parser_options())
    root: etree._Element | None = None
    list_closed = False
    try:
        parser.feed(data)
        parser.close()
    except etree.XMLSyntaxError:
        pass  # expected: we are reading a document we know is cut short
    for event, item in parser.read_events():
        el = cast(etree._Element, item)  # ("start"/"end", element) with these events
        if root is None:
            root = el
        if event == "end" and el.tag == _q("ListeDomaines"):
            list_closed = True
    if root is not None:
        _refuse_dtd(root, source)
    if root is None or not list_closed:
        raise InvalidWhitelist(
            f"{source}: the file is truncated before the end of the domain list: refused"
            " (importing it would remove the domains that are missing)"
        )
    return root


def parse_whitelist(data: bytes, source: str = "whitelist") -> Whitelist:
    """Parse the whitelist XML in `data`; raises InvalidWhitelist with a one-line reason."""
    if len(data) > MAX_SIZE:
        raise InvalidWhitelist(f"{source}: larger than {MAX_SIZE // (1024 * 1024)} MB: refused")
    warnings: list[str] = []
    try:
        root = etree.fromstring(data, etree.XMLParser(**_parser_options()))
    except etree.XMLSyntaxError as exc:
        if getattr(exc, "code", None) != _XML_ERR_TAG_NOT_FINISHED:
            # libxml2 may quote the offending bytes (a newline...): keep the message on one line
            message = " ".join(str(exc.msg).split()).encode("ascii", "backslashreplace").decode()
            raise InvalidWhitelist(f"{source}: not well-formed XML: {message}") from None
        root = _truncated_root(data, source)
        warnings.append(
            f"{source}: the file ends without </ListeBlancheMSSante>; the domain list itself"
            " is complete"
        )
    _refuse_dtd(root, source)
    if root.tag != _q("ListeBlancheMSSante"):
        raise InvalidWhitelist(
            f"{source}: root element is {root.tag}, not ListeBlancheMSSante in namespace {NS}"
        )
    domain_list = root.find(_q("ListeDomaines"))
    if domain_list is None:
        raise InvalidWhitelist(f"{source}: no ListeDomaines element")
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
            warnings.append(f"entry skipped: {exc}")
            continue
        if not _text(el, "DNCertificatOperateur"):
            warnings.append(f"entry skipped: {name} has no DNCertificatOperateur")
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
