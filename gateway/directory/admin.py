"""What an administrator may do with the trust directory, for the CLI, the API and the console.

`MailboxService` and `TrustService` hold the rules the three faces share: which fields make a
mailbox of each kind, what a missing identifier is called, that reading patients' entries is a
patient-data read (audited), who may change what (`Caller`). Field checks themselves stay in
`directory/identity.py` and `validate.py`, applied by the repository: a refusal is one
`GatewayError` naming the field and the rule, and changes nothing.
"""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import Any

from gateway.admins.model import Caller
from gateway.admins.paging import Page, check_window, counted, paginate
from gateway.audit import Recorder
from gateway.directory.model import (
    Application,
    Mailbox,
    MailboxKind,
    MailboxState,
    Organisation,
    OrganisationKind,
    Patient,
    Professional,
    TrustDomain,
)
from gateway.directory.repository import Directory, UnknownDomain, WhitelistChange
from gateway.directory.validate import InvalidField, MissingField
from gateway.directory.validate import savoir_faire as checked_savoir_faire
from gateway.texts import t, text_of

# Fields `update` accepts (the CLI's options, the API's JSON keys, the console's form fields).
UPDATE_FIELDS = (
    "display_name", "rpps", "adeli", "family_name", "given_name", "profession", "specialty",
    "savoir_faire",
    "structure", "title", "finess", "siret", "name", "kind", "address", "phone", "birth_name",
    "given_names", "sex", "birth_date", "birth_place", "objects_to_prescriber_feedback",
)


def _opt(value: str | None) -> str | None:
    """Empty form fields and absent options mean 'not given'."""
    if value is None:
        return None
    value = value.strip() if isinstance(value, str) else value
    return value or None


def _req(value: str | None, field: str) -> str:
    v = _opt(value)
    if v is None:
        raise MissingField(field, "must not be empty")
    return v


def plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def mailbox_dict(m: Mailbox) -> dict[str, Any]:
    """The JSON form of a mailbox (`show --json`, `list --json`, the API)."""
    data = {k: plain(v) for k, v in dataclasses.asdict(m).items() if v is not None}
    data["kind"] = m.kind.value
    data["state"] = m.state.value
    data["has_password"] = m.has_password
    return data


def identifier_of(m: Mailbox) -> str:
    if m.professional:
        p = m.professional
        return f"RPPS {p.rpps}" if p.rpps else f"ADELI {p.adeli}"
    if m.organisation:
        o = m.organisation
        return f"FINESS {o.finess}" if o.finess else f"SIRET {o.siret}"
    if m.patient:
        return f"INS {m.patient.ins}"
    return ""


def parse_kind(value: str | None) -> MailboxKind | None:
    if not value:
        return None
    try:
        return MailboxKind(value.upper())
    except ValueError:
        raise InvalidField("kind", value, "a mailbox kind is PER, ORG, APP or PATIENT") from None


def parse_state(value: str | None) -> MailboxState | None:
    if not value:
        return None
    try:
        return MailboxState(value)
    except ValueError:
        raise InvalidField("state", value, "a state is active or suspended") from None


class MailboxService:
    """Mailboxes: professionals (PER), structures (ORG), applications (APP), patients."""

    resource = "mailboxes"

    def __init__(self, directory: Directory, audit: Recorder, caller: Caller) -> None:
        self.directory = directory
        self.audit = audit
        self.caller = caller

    def _write(self) -> None:
        self.caller.require(self.resource, write=True)

    def _patient_reads(self, action: str, patients: list[Mailbox]) -> None:
        """An administrator reading patients' identities is a patient-data read: audit it."""
        if patients:
            target = patients[0].address if len(patients) == 1 else f"{len(patients)} patients"
            self.audit(self.caller.actor, action, target,
                       {"patients": [p.address for p in patients], "via": self.caller.via})

    # --- add ----------------------------------------------------------------------------
    def add_professional(
        self, *, email: str | None, rpps: str | None = None, adeli: str | None = None,
        family_name: str | None = None, given_name: str | None = None,
        profession: str | None = None, specialty: str | None = None,
        structure: str | None = None, title: str | None = None, phone: str | None = None,
        display_name: str | None = None, savoir_faire: str | None = None,
    ) -> Mailbox:
        self._write()
        rpps, adeli = _opt(rpps), _opt(adeli)
        if not rpps and not adeli:
            raise MissingField(
                "rpps", "give an RPPS number (11 digits) or, for professions without one,"
                " an ADELI number"
            )
        if rpps and adeli:
            raise InvalidField("adeli", adeli, "give an RPPS or an ADELI number, not both")
        p = Professional(
            rpps=rpps, adeli=adeli, family_name=family_name or "", given_name=given_name or "",
            profession=_req(profession, "profession"), specialty=_opt(specialty),
            structure=_opt(structure), title=_opt(title), phone=_opt(phone),
            savoir_faire=checked_savoir_faire(_opt(savoir_faire)),
        )
        return self.directory.add_professional(_req(email, "email"), p, _opt(display_name))

    def add_organisation(
        self, *, email: str | None, finess: str | None = None, siret: str | None = None,
        name: str | None = None, kind: str | None = None, address: str | None = None,
        phone: str | None = None, display_name: str | None = None,
    ) -> Mailbox:
        self._write()
        finess, siret = _opt(finess), _opt(siret)
        if not finess and not siret:
            raise MissingField(
                "finess", "give a FINESS number (9 characters) or a SIRET (14 digits)"
            )
        if finess and siret:
            raise InvalidField("siret", siret, "give a FINESS or a SIRET number, not both")
        try:
            org_kind = OrganisationKind(_req(kind, "kind"))
        except ValueError:
            raise InvalidField(
                "kind", kind, "a structure is a pharmacy, practice, hospital or other"
            ) from None
        o = Organisation(
            finess=finess, siret=siret, name=name or "", kind=org_kind, address=_opt(address),
            phone=_opt(phone),
        )
        return self.directory.add_organisation(_req(email, "email"), o, _opt(display_name))

    def add_patient(
        self, *, ins: str | None, birth_name: str | None = None, given_names: str | None = None,
        sex: str | None = None, birth_date: str | None = None, birth_place: str | None = None,
        objects_to_prescriber_feedback: bool = False,
    ) -> Mailbox:
        self._write()
        p = Patient(
            ins=_req(ins, "ins"), birth_name=birth_name or "", given_names=given_names or "",
            sex=_req(sex, "sex"), birth_date=_req(birth_date, "birth-date"),  # type: ignore[arg-type]
            birth_place=_req(birth_place, "birth-place"),
            objects_to_prescriber_feedback=bool(objects_to_prescriber_feedback),
        )
        return self.directory.add_patient(p)

    def add_application(self, *, email: str | None, name: str | None = None) -> Mailbox:
        self._write()
        return self.directory.add_application(_req(email, "email"), Application(name or ""))

    # --- read ---------------------------------------------------------------------------
    def _filters(
        self, kind: str | None, domain: str | None, search: str | None, state: str | None
    ) -> dict[str, Any]:
        self.caller.require(self.resource)
        return {"kind": parse_kind(kind), "domain": _opt(domain), "search": _opt(search),
                "state": parse_state(state)}

    def page(
        self, *, kind: str | None = None, domain: str | None = None, search: str | None = None,
        state: str | None = None, offset: int | None = None, limit: int | None = None,
    ) -> Page[Mailbox]:
        """One page of the matches, searched and cut by the directory itself (an operator has
        hundreds of thousands); the patients on it are audited as read."""
        filters = self._filters(kind, domain, search, state)
        o, n = check_window(offset, limit)
        items = self.directory.list_mailboxes(**filters, offset=o, limit=n)
        self._patient_reads("directory.list", [m for m in items if m.patient])
        return counted(items, o, n, lambda: self.directory.count_mailboxes(**filters))

    def list_all(
        self, *, kind: str | None = None, domain: str | None = None, search: str | None = None,
        state: str | None = None,
    ) -> list[Mailbox]:
        """Every match, no paging (the CLI's `directory list`)."""
        found = self.directory.list_mailboxes(**self._filters(kind, domain, search, state))
        self._patient_reads("directory.list", [m for m in found if m.patient])
        return found

    def show(self, address: str) -> Mailbox:
        self.caller.require(self.resource)
        m = self.directory.require(_req(address, "email"))
        self._patient_reads("directory.show", [m] if m.patient else [])
        return m

    def structures(self, at_most: int = 200) -> list[Mailbox] | None:
        """ORG mailboxes (a professional's structure: the console's choice list), or None when
        there are more than `at_most` (the console then asks for the address)."""
        self.caller.require(self.resource)
        found = self.directory.list_mailboxes(kind=MailboxKind.ORG, limit=at_most + 1)
        return None if len(found) > at_most else found

    # --- change -------------------------------------------------------------------------
    def update(self, address: str, changes: dict[str, Any]) -> Mailbox:
        """Change fields; a value of "" or None clears an optional field."""
        self._write()
        out: dict[str, Any] = {}
        for key, value in changes.items():
            if key not in UPDATE_FIELDS:
                raise InvalidField(key.replace("_", "-"), value, "is not a mailbox field")
            if key == "objects_to_prescriber_feedback":
                out[key] = bool(value)
            else:
                out[key] = value if value not in ("",) else None
        return self.directory.update(address, **out)

    def suspend(self, address: str) -> Mailbox:
        self._write()
        return self.directory.suspend(address)

    def resume(self, address: str) -> Mailbox:
        self._write()
        return self.directory.resume(address)

    def delete(self, address: str) -> str:
        self._write()
        found = self.directory.require(address).address
        self.directory.delete(found)
        return found

    def set_password(self, address: str, password: str) -> str:
        self._write()
        found = self.directory.require(address).address
        self.directory.set_password(found, password)
        return found


def domain_dict(d: TrustDomain) -> dict[str, Any]:
    data = dataclasses.asdict(d)
    data["operator_dns"] = list(d.operator_dns)
    return data


class TrustService:
    """Trust-space domains: ours, peers with their operators' DNs, the national whitelist."""

    resource = "trust"

    def __init__(
        self, directory: Directory, caller: Caller, *, max_removed_share: float | None = None
    ) -> None:
        self.directory = directory
        self.caller = caller
        self.max_removed_share = max_removed_share  # None: the directory's default

    def page(
        self, *, search: str | None = None, ours: bool | None = None,
        offset: int | None = None, limit: int | None = None,
    ) -> Page[TrustDomain]:
        self.caller.require(self.resource)
        return paginate(
            self.directory.list_domains(search=_opt(search), ours=ours), offset, limit or 100
        )

    def list_all(self, *, search: str | None = None, ours: bool | None = None) -> list[TrustDomain]:
        self.caller.require(self.resource)
        return self.directory.list_domains(search=_opt(search), ours=ours)

    def show(self, name: str) -> TrustDomain:
        self.caller.require(self.resource)
        found = self.directory.get_domain(_req(name, "domain"))
        if found is None:
            raise UnknownDomain(name)
        return found

    def whitelist_generated(self) -> str | None:
        return self.directory.whitelist_generated()

    def add(
        self, name: str, dns: list[str] | tuple[str, ...] = (), *, ours: bool = False,
        description: str | None = None,
    ) -> TrustDomain:
        self.caller.require(self.resource, write=True)
        return self.directory.add_domain(
            _req(name, "domain"), [d for d in dns if d.strip()], ours=ours,
            description=_opt(description),
        )

    def remove(self, name: str) -> str:
        self.caller.require(self.resource, write=True)
        self.directory.remove_domain(_req(name, "domain"))
        return name.strip().lower()

    def import_whitelist(
        self, path: str, *, allow_older: bool = False, allow_removals: bool = False
    ) -> WhitelistChange:
        """Import a whitelist file (an upload is written to a temporary file first)."""
        self.caller.require(self.resource, write=True)
        share = {} if self.max_removed_share is None else {
            "max_removed_share": self.max_removed_share}
        return self.directory.import_whitelist(
            path, allow_older=allow_older, allow_removals=allow_removals, **share
        )


def whitelist_report(change: WhitelistChange, source: str, show_names: int = 50) -> list[str]:
    """The lines `mssgw trust import-whitelist` prints (the console shows the same, in
    French: each line is a `Text`)."""
    lines: list[str] = [t("warning: {warning}", warning=text_of(w)) for w in change.warnings]
    lines.append(t(
        "imported {file} (generated {generated}): {entries} entries, {domains} domains",
        file=source, generated=change.generated or t("unknown"), entries=change.entries,
        domains=change.domains))
    lines.append(t(
        "added {added}, removed {removed}, changed {changed} (operator certificate DN)",
        added=len(change.added), removed=len(change.removed), changed=len(change.changed)))
    for mark, names in (("+", change.added), ("-", change.removed), ("~", change.changed)):
        if len(names) > show_names:
            lines.append(t("{mark} ... {count} domains (--json lists them)", mark=mark,
                           count=len(names)))
            continue
        lines += [f"{mark} {name}" for name in names]  # names: nothing to translate
    return lines
