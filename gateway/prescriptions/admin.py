"""What an administrator may do with the prescription registry, for the CLI, API and console.

Every read goes through the registry with the caller's name as actor, so the registry audits it
(a prescription is patient data); a cancellation is made on the prescriber's behalf and
recorded as "<caller> for <prescriber>".
"""

from __future__ import annotations

from gateway.admins.model import Caller
from gateway.admins.paging import Page, check_window, counted
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
        """One page, newest first, cut by the registry itself (an operator's registry holds
        millions): only the patients on the page are audited as read."""
        self.caller.require(self.resource)
        ins, who = (patient or "").strip() or None, (prescriber or "").strip() or None
        state = parse_status(status)
        o, n = check_window(offset, limit)
        items = self.registry.find(actor=self.caller.actor, patient_ins=ins, prescriber=who,
                                   status=state, limit=n, offset=o)
        return counted(items, o, n, lambda: self.registry.count(patient_ins=ins, prescriber=who,
                                                                status=state))

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
