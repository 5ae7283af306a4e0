"""Who may read a patient's record, and who may change a document: pure decisions.

The rule (our simple, documented version of the DMP's care-team rule):
- the patient reads their own record, and only theirs; they may delete their documents;
- a professional or a structure reads a patient's record once they have authored a document in it
  (as author, by address or national id, or as the author's institution): the prescriber who
  filed a prescription, the pharmacy that filed a dispensation for that patient;
- the gateway's own flows and the local administrator (CLI) read and change everything; every
  access, granted or refused, is written to the audit log by the repository;
- deprecating or deleting a document: its author (or institution), the gateway, the administrator;
  deleting also the patient;
- a document filed with `hidden_from` keys is invisible to those professionals (never to its
  author): the flow hides a dispensation from the prescriber when the patient objected to
  prescriber feedback;
- other software (APP mailboxes) has no access.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.dmp.model import Actor, ActorKind, DocumentEntry


@dataclass(frozen=True)
class Decision:
    granted: bool
    reason: str


def may_read(actor: Actor, patient_ins: str, authored_in_record: bool) -> Decision:
    """`authored_in_record`: the actor's keys match an author of a document in this record."""
    if actor.kind in (ActorKind.ADMIN, ActorKind.GATEWAY):
        return Decision(True, actor.kind.value)
    if actor.kind is ActorKind.PATIENT:
        if actor.ins == patient_ins:
            return Decision(True, "the patient's own record")
        return Decision(False, "a patient may read only their own record")
    if actor.kind in (ActorKind.PROFESSIONAL, ActorKind.ORGANISATION):
        if authored_in_record:
            return Decision(True, "author of a document in this record")
        return Decision(
            False, "only professionals who authored a document for this patient may read it"
        )
    return Decision(False, "software mailboxes have no access to patients' records")


HIDEABLE_FROM = (ActorKind.PROFESSIONAL, ActorKind.ORGANISATION)


def may_see(actor: Actor, entry: DocumentEntry) -> Decision:
    """Once the record is readable: is this document hidden from the actor?"""
    if actor.kind in HIDEABLE_FROM and set(entry.hidden_from) & actor.keys():
        return Decision(False, "the patient has hidden this document from this professional")
    return Decision(True, "not hidden")


def is_author(actor: Actor, entry: DocumentEntry) -> bool:
    return bool(entry.metadata.access_keys() & actor.keys())


def may_change(actor: Actor, entry: DocumentEntry, *, delete: bool = False) -> Decision:
    if actor.kind in (ActorKind.ADMIN, ActorKind.GATEWAY):
        return Decision(True, actor.kind.value)
    if delete and actor.kind is ActorKind.PATIENT and actor.ins == entry.metadata.patient_ins:
        return Decision(True, "the patient's own document")
    if actor.kind in (ActorKind.PROFESSIONAL, ActorKind.ORGANISATION) and is_author(actor, entry):
        return Decision(True, "author of the document")
    verb = "delete" if delete else "deprecate"
    return Decision(False, f"only the document's author may {verb} it")


def may_submit(actor: Actor) -> Decision:
    if actor.kind in (
        ActorKind.ADMIN,
        ActorKind.GATEWAY,
        ActorKind.PROFESSIONAL,
        ActorKind.ORGANISATION,
    ):
        return Decision(True, actor.kind.value)
    return Decision(False, "only professionals and the gateway file documents")
