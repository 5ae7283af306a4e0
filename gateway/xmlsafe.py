"""Parse untrusted XML safely: no DTD, no entities, no network, bounded size.

Every XML document from outside (CDA, XDM metadata, signatures, the whitelist) goes through here.
lxml with these settings refuses billion-laughs and XXE documents instead of expanding them; we
also refuse any DOCTYPE outright, because no document we accept needs one.
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from gateway.errors import GatewayError

MAX_XML_BYTES = 50 * 1024 * 1024  # a prescription with its embedded PDF is well under this


class UnsafeXML(GatewayError):
    """The document is not well-formed, too large, or uses DTDs/entities."""


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=False,
        remove_pis=False,
    )


def parse_xml(
    data: bytes, *, what: str = "XML document", max_bytes: int = MAX_XML_BYTES
) -> etree._ElementTree:
    """Parse `data` or raise UnsafeXML with a one-line reason naming `what`."""
    if len(data) > max_bytes:
        raise UnsafeXML(f"{what}: {len(data)} bytes is over the limit of {max_bytes}")
    try:
        tree = etree.ElementTree(etree.fromstring(data, _parser()))
    except etree.XMLSyntaxError as exc:
        reason = " ".join(str(exc).split())  # lxml messages may span lines; ours are one line
        raise UnsafeXML(f"{what}: not well-formed XML: {reason}") from None
    docinfo: Any = tree.docinfo  # lxml-stubs lacks DocInfo.doctype
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise UnsafeXML(f"{what}: a DOCTYPE (DTD) is not allowed")
    for node in tree.iter():
        if isinstance(node, etree._Entity):
            raise UnsafeXML(f"{what}: entity references are not allowed")
    return tree
