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


_IDENT = re.compile(r"\b([0-9A-Z]{3}(?:[ -]?[0-9A-Z]{3}){5})\b")


def identifiers_in(text: str) -> list[str]:
    """Candidate e-prescription identifiers written in `text` (grouped by 3 or not)."""
    from gateway.prescriptions.identifier import check_identifier

    found: list[str] = []
    for m in _IDENT.finditer(text.upper()):
        check = check_identifier(m.group(1))
        if check.ok and check.identifier not in found:
            found.append(check.identifier)
    return found
