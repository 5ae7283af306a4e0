"""What an administrator may do with the prescription registry, for the CLI, API and console.

Every read goes through the registry with the caller's name as actor, so the registry audits it
(a prescription is patient data); a cancellation is made on the prescriber's behalf and
recorded as "<caller> for <prescriber>".
"""

from __future__ import annotations

from gateway.admins.model import Caller
from gateway.admins.paging import Page, paginate
from gateway.directory.validate import InvalidField, MissingField
from gateway.prescriptions.registry import (
    CancelResult,
    PrescriptionRecord,
    PrescriptionRegistry,
    Status,
)
from gateway.texts import t


def parse_status(value: str | None) -> Status | None:
    if not value:
        return None
    try:
        return Status(value)
    except ValueError:
        raise InvalidField(
            "status", value, t("a status is one of {statuses}",
                               statuses=", ".join(s.value for s in Status))
        ) from None


class PrescriptionService:
    resource = "prescriptions"

    def __init__(self, registry: PrescriptionRegistry, caller: Caller) -> None:
        self.registry = registry
        self.caller = caller

    def page(
        self, *, patient: str | None = None, prescriber: str | None = None,
        status: str | None = None, offset: int | None = None, limit: int | None = None,
    ) -> Page[PrescriptionRecord]:
        self.caller.require(self.resource)
        found = self.find(patient=patient, prescriber=prescriber, status=status, limit=10000)
        return paginate(found, offset, limit)

    def find(
        self, *, patient: str | None = None, prescriber: str | None = None,
        status: str | None = None, limit: int = 1000,
    ) -> list[PrescriptionRecord]:
        self.caller.require(self.resource)
        return self.registry.find(
            actor=self.caller.actor, patient_ins=(patient or "").strip() or None,
            prescriber=(prescriber or "").strip() or None, status=parse_status(status),
            limit=limit,
        )

    def show(self, identifier: str) -> PrescriptionRecord:
        self.caller.require(self.resource)
        return self.registry.get(identifier, actor=self.caller.actor)

    def cancel(self, identifier: str, *, by: str | None, reason: str | None = None) -> CancelResult:
        self.caller.require(self.resource, write=True)
        if not by or not by.strip():
            raise MissingField("by", "give the prescriber's address: the cancellation is theirs")
        return self.registry.cancel(
            identifier, by=by.strip(), reason=(reason or "").strip() or None,
            actor=f"{self.caller.actor} for {by.strip()}",
        )
