"""Pieces every flow shares: the plan a worker returns, documents found in a message, the
one-line reasons people read."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from gateway.documents.parse import document_kind
from gateway.errors import GatewayError
from gateway.flows.mail import Attachment
from gateway.pipeline import Delivery, Message, Outcome
from gateway.xdm import Limits, Package, read_package
from gateway.xmlsafe import parse_xml

PRESCRIPTION_CODE = "57833-6"
# The event-loop prechecks (dispense.may_be_dispensation, filing.may_hold_package) parse only
# messages up to this size; larger ones go to the pool as they are.
PRECHECK_MAX_BYTES = 256 * 1024
DISPENSATION_CODE = "60593-1"


@dataclass(frozen=True)
class Plan:
    """What a flow decided in the worker: the recipients whose original copy it replaces (or
    drops) and the messages to deliver instead."""

    handled: tuple[str, ...] = ()
    deliveries: tuple[Delivery, ...] = ()
    notes: tuple[str, ...] = field(default=())  # for the log


def apply(message: Message, outcome: Outcome, plan: Plan | None) -> Outcome:
    if plan is None:
        return outcome
    handled = {r.lower() for r in plan.handled}
    kept = []
    for d in outcome.deliveries:
        rest = tuple(r for r in d.recipients if r not in handled)
        if rest:
            kept.append(Delivery(rest, d.data, d.sender))
    return Outcome(deliveries=(*kept, *plan.deliveries), rejections=outcome.rejections)


def is_zip(a: Attachment) -> bool:
    return a.content_type in ("application/zip", "application/x-zip-compressed") or \
        a.filename.lower().endswith(".zip") or a.data[:4] == b"PK\x03\x04"


def is_xml(a: Attachment) -> bool:
    return a.content_type in ("text/xml", "application/xml") or a.filename.lower().endswith(
        ".xml") or a.data.lstrip(b"\xef\xbb\xbf \r\n\t")[:5] == b"<?xml"


def kind_of_cda(data: bytes) -> str | None:
    """'prescription', 'dispensation', other kinds, or None when `data` is no CDA we read."""
    try:
        return str(document_kind(parse_xml(data).getroot()))
    except Exception:
        return None


def packages(files: list[Attachment], limits: object) -> list[tuple[Attachment, Package | str]]:
    """Each ZIP attachment read as an XDM package, or the reason it cannot be."""
    out: list[tuple[Attachment, Package | str]] = []
    for a in files:
        if not is_zip(a):
            continue
        try:
            out.append((a, read_package(a.data, limits)))  # type: ignore[arg-type]
        except Exception as exc:
            out.append((a, str(exc) or type(exc).__name__))
    return out


def prescription_cda(package: bytes, limits: Limits) -> bytes | None:
    """The prescription CDA in an XDM package (the registered one, which the gateway wrote)."""
    pkg = read_package(package, limits)
    return next((d.data for d in pkg.content if kind_of_cda(d.data) == "prescription"), None)


def registered_cda(registry: Any, identifier: str, actor: str, limits: Limits) -> bytes | None:
    """The prescription CDA registered under `identifier`, or None (unknown, no package)."""
    try:
        data = registry.package(identifier, actor=actor)
    except GatewayError:
        return None
    return prescription_cda(data, limits) if data else None


def idempotence_key(*parts: str | None) -> str:
    return hashlib.sha256("\x00".join(p or "" for p in parts).encode()).hexdigest()


# A word of letters and digits, and what separates it from the next one.
_TOKEN = re.compile(r"[0-9A-Za-z]+")
_JOINER = re.compile(r"[ \t.\-]")  # one space, tab, dot or hyphen between groups


def identifiers_in(text: str) -> list[str]:
    """The e-prescription identifiers written anywhere in `text`, in order: 18 characters,
    whole or in groups of one size ("L71 90G 0OK PB6 U1L 56T", "L7190G-0OKPB6-U1L56T"), each
    group separated from the next by one space, dot or hyphen, any case. Every run of words that
    adds up to 18 characters is tried, starting at every word (so "est L71 90G ..." finds the
    identifier after "est"); only those whose check character is right are kept. Groups of one
    size, because one candidate in 37 passes the check by chance: "voici mon ordonnance" (5, 3
    and 10 letters) must not be read as an identifier. "est L71 90G 0OK PB6 U1L" may still pass
    beside the real one: callers try the candidates in order against the registry."""
    from gateway.prescriptions.identifier import LENGTH, check_identifier

    tokens = list(_TOKEN.finditer(text))
    found: list[str] = []
    for i, first in enumerate(tokens):
        if len(first.group()) > LENGTH:
            continue
        length, j = len(first.group()), i
        while length < LENGTH and j + 1 < len(tokens):
            gap = text[tokens[j].end():tokens[j + 1].start()]
            if not _JOINER.fullmatch(gap):
                break
            j += 1
            length += len(tokens[j].group())
        sizes = {len(t.group()) for t in tokens[i:j + 1]}
        if length != LENGTH or len(sizes) != 1:
            continue
        check = check_identifier(text[first.start():tokens[j].end()])
        if check.ok and check.identifier not in found:
            found.append(check.identifier)
    return found
