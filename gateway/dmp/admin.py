"""What an administrator may read in the embedded DMP, for the CLI, API and console.

The DMP audits every read itself (`Actor.admin(name)`): listing a patient's documents, their
metadata, and their bytes are all patient-data reads recorded under the caller's name.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from gateway.admins.model import Caller
from gateway.admins.paging import Page, paginate
from gateway.directory.validate import InvalidField, MissingField
from gateway.dmp import Actor, DocumentRepository, DocumentStatus
from gateway.dmp.model import DocumentEntry, StoredDocument
from gateway.texts import t

STATUS_CHOICES = [s.value for s in DocumentStatus] + ["all"]


def day(text: str | None, field: str, *, end: bool = False) -> dt.datetime | None:
    if not text:
        return None
    try:
        when = dt.date.fromisoformat(text)
    except ValueError:
        raise InvalidField(field, text, "a date is YYYY-MM-DD") from None
    moment = dt.datetime.combine(when, dt.time.max if end else dt.time.min)
    return moment.replace(tzinfo=dt.UTC)


def parse_status(value: str | None) -> DocumentStatus | None:
    if value in (None, ""):
        return DocumentStatus.APPROVED
    if value == "all":
        return None
    try:
        return DocumentStatus(value)
    except ValueError:
        raise InvalidField("status", value, t("one of {choices}",
                                              choices=", ".join(STATUS_CHOICES))) from None


class DmpService:
    resource = "dmp"

    def __init__(self, dmp: DocumentRepository, caller: Caller) -> None:
        self.dmp = dmp
        self.caller = caller

    @property
    def actor(self) -> Actor:
        return Actor.admin(self.caller.actor)

    def find(
        self, patient: str | None, *, class_codes: Sequence[str] = (),
        type_codes: Sequence[str] = (), date_from: str | None = None,
        date_to: str | None = None, status: str | None = None,
    ) -> list[DocumentEntry]:
        self.caller.require(self.resource)
        if not patient or not patient.strip():
            raise MissingField("patient", "give the patient's INS")
        return self.dmp.find(
            patient.strip(), actor=self.actor, class_codes=[c for c in class_codes if c],
            type_codes=[t for t in type_codes if t], created_from=day(date_from, "from"),
            created_to=day(date_to, "to", end=True), status=parse_status(status),
        )

    def page(
        self, patient: str | None, *, offset: int | None = None, limit: int | None = None,
        **filters: object,
    ) -> Page[DocumentEntry]:
        return paginate(self.find(patient, **filters), offset, limit)  # type: ignore[arg-type]

    def show(self, unique_id: str) -> DocumentEntry:
        self.caller.require(self.resource)
        return self.dmp.entry(unique_id, actor=self.actor)

    def get(self, unique_id: str) -> StoredDocument:
        self.caller.require(self.resource)
        return self.dmp.retrieve(unique_id, actor=self.actor)
