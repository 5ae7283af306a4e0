"""The trust directory's repository interface: what callers may do, whatever the storage.

`Directory` is a typing.Protocol; `SQLiteDirectory` (gateway.directory.sqlite) is the embedded
implementation and a PostgreSQL one can follow behind the same methods. Every change is atomic:
a refused operation raises a GatewayError subclass naming the field and the rule and leaves the
directory as it was. Every change is also written to the audit log with the acting user.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.directory.model import (
    Application,
    Mailbox,
    MailboxKind,
    MailboxState,
    Organisation,
    Patient,
    Professional,
    RemoteEntry,
    RemoteKind,
    TrustDomain,
)
from gateway.directory.whitelist import MAX_REMOVED_SHARE
from gateway.errors import Conflict, NotFound
from gateway.texts import t


class UnknownMailbox(NotFound):
    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__(t("email: no mailbox {address!r} in the directory", address=address))


class DuplicateMailbox(Conflict):
    """The address, or a unique identifier (RPPS, ADELI, INS), is already registered."""

    def __init__(self, field: str, value: str, owner: str | None = None) -> None:
        self.field = field
        whose = t(" (mailbox {owner})", owner=owner) if owner else ""
        super().__init__(t(
            "{field}: {value!r} is already registered{whose}",
            field=field, value=value, whose=whose))


class UnknownDomain(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(t(
            "domain: {name!r} is not a trust-space domain of this gateway", name=name))


@dataclass(frozen=True)
class Credentials:
    """What the authenticator needs on every login: cheap to fetch (one primary-key lookup)."""

    address: str
    state: MailboxState
    password_hash: str | None


@dataclass(frozen=True)
class WhitelistChange:
    """The difference a whitelist import made."""

    generated: str | None
    entries: int
    domains: int
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        return {
            "generated": self.generated,
            "entries": self.entries,
            "domains": self.domains,
            "added": list(self.added),
            "removed": list(self.removed),
            "changed": list(self.changed),
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class RemoteImport:
    """What an import of the national list of MSSanté mailboxes changed (counts: the list has
    ~500,000 addresses)."""

    entries: int  # entries given
    added: int
    updated: int
    removed: int  # imported before, absent now
    unchanged: int
    manual: int  # given, but an administrator's entry for the address is kept
    ours: int  # in one of our own domains (our own mailboxes are the directory's): ignored
    outside_trust_space: int  # imported, though their domain is not (yet) a trust-space peer

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class TrustDomains(Protocol):
    """The trust space as this gateway sees it: our own domains and the peers (operators) of
    the national whitelist, with the certificate DNs each may present. What the SMTP policy,
    the relay and the outbound queue ask; names are compared lower-case."""

    def register_own_domains(self, names: Sequence[str]) -> list[str]:
        """Mark `names` as ours (idempotent); returns the names newly registered."""
        ...

    def add_domain(
        self,
        name: str,
        operator_dns: Sequence[str] = (),
        *,
        ours: bool = False,
        description: str | None = None,
    ) -> TrustDomain: ...

    def remove_domain(self, name: str) -> None: ...

    def get_domain(self, name: str) -> TrustDomain | None: ...

    def list_domains(
        self, *, search: str | None = None, ours: bool | None = None
    ) -> list[TrustDomain]: ...

    def is_own_domain(self, name: str) -> bool: ...

    def is_trusted_domain(self, name: str) -> bool:
        """True for our own domains and for listed peers."""
        ...

    def expected_operator_dns(self, domain: str) -> tuple[str, ...]:
        """Every subject DN a peer serving `domain` may present (empty for unknown domains)."""
        ...

    def expected_operator_dn(self, domain: str) -> str | None:
        """The DN of the most recent whitelist entry for `domain`."""
        ...

    def peer_certificate_matches(self, domain: str, subject: Any) -> bool:
        """True when `subject` (x509.Name or RFC 4514 string) is a listed DN for `domain`."""
        ...

    def is_trust_space_operator(self, subject: Any) -> bool:
        """True when `subject` is the DN listed for at least one peer domain (e.g. for a bounce,
        whose empty sender names no domain)."""
        ...

    def whitelist_generated(self) -> str | None:
        """DateDeGeneration of the whitelist last imported (None before the first import)."""
        ...

    def import_whitelist(
        self,
        path: str,
        *,
        allow_older: bool = False,
        allow_removals: bool = False,
        max_removed_share: float = MAX_REMOVED_SHARE,
    ) -> WhitelistChange:
        """Import the national whitelist: add, update and remove peer domains; report the change.

        Refuses a list generated before the one already imported unless `allow_older`, and one
        that would remove more than `max_removed_share` of the peer domains imported before
        unless `allow_removals` (a bad file must not empty the trust space). A refused import
        changes nothing.
        """
        ...

    def close(self) -> None: ...


class Directory(TrustDomains, Protocol):
    """Mailboxes, and the trust-space domains (`TrustDomains`). Addresses are compared
    lower-case."""

    patient_domain: str

    # --- mailboxes -------------------------------------------------------------------------
    def add_professional(
        self, address: str, professional: Professional, display_name: str | None = None
    ) -> Mailbox: ...

    def add_organisation(
        self, address: str, organisation: Organisation, display_name: str | None = None
    ) -> Mailbox: ...

    def add_patient(self, patient: Patient, address: str | None = None) -> Mailbox:
        """Register a patient; the address defaults to `<INS>@patient.<domain>`."""
        ...

    def add_application(self, address: str, application: Application) -> Mailbox: ...

    def get(self, address: str) -> Mailbox | None: ...

    def require(self, address: str) -> Mailbox:
        """Like get(), but raises UnknownMailbox."""
        ...

    def find_by_rpps(self, rpps: str) -> Mailbox | None: ...

    def find_by_adeli(self, adeli: str) -> Mailbox | None: ...

    def find_by_ins(self, ins: str) -> Mailbox | None: ...

    def find_by_finess(self, finess: str) -> list[Mailbox]: ...

    def members_of(self, structure: str) -> list[Mailbox]:
        """The professionals whose structure is the ORG mailbox `structure`."""
        ...

    def list_mailboxes(
        self,
        *,
        kind: MailboxKind | None = None,
        domain: str | None = None,
        search: str | None = None,
        state: MailboxState | None = None,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[Mailbox]:
        """The matching mailboxes by address; `offset` and `limit` (None: no limit) take one
        window of them, in the store (an operator has hundreds of thousands). `search`: every
        word (`validate.folded`) is found in the address, the names or the identifiers."""
        ...

    def count_mailboxes(
        self,
        *,
        kind: MailboxKind | None = None,
        domain: str | None = None,
        search: str | None = None,
        state: MailboxState | None = None,
    ) -> int:
        """How many mailboxes `list_mailboxes` would list with the same filters."""
        ...

    def count_by_kind(self) -> dict[MailboxKind, int]:
        """How many mailboxes of each kind (kinds with none are left out)."""
        ...

    def update(self, address: str, **changes: Any) -> Mailbox:
        """Change fields of the mailbox's identity (e.g. family_name=..., structure=...)."""
        ...

    def suspend(self, address: str) -> Mailbox: ...

    def resume(self, address: str) -> Mailbox: ...

    def delete(self, address: str) -> None: ...

    def set_password(self, address: str, password: str) -> None: ...

    def verify_password(self, address: str, password: str) -> bool:
        """Slow (scrypt): call it off the event loop. Suspended mailboxes never verify."""
        ...

    def credentials(self, address: str) -> Credentials | None: ...

    # --- mailboxes hosted by other operators (never log in, hold no mail here) -------------
    def add_remote(self, entry: RemoteEntry) -> RemoteEntry:
        """Add (or replace an imported entry by) an administrator's entry. Refused: an address
        in one of our own domains or in a patients' domain, a domain that is not a trust-space
        peer, an address already added by hand (`DuplicateMailbox`), invalid identifiers."""
        ...

    def get_remote(self, address: str) -> RemoteEntry | None: ...

    def list_remote(
        self,
        *,
        kind: RemoteKind | None = None,
        domain: str | None = None,
        search: str | None = None,
        source: str | None = None,
        limit: int | None = None,
    ) -> list[RemoteEntry]:
        """Ordered by address; `search`: words found in the address, name, identifiers."""
        ...

    def remove_remote(self, address: str) -> None:
        """Raises UnknownMailbox when there is no such remote entry."""
        ...

    def import_remote(
        self,
        entries: Sequence[RemoteEntry],
        *,
        source_name: str = "",
        allow_removals: bool = False,
        max_removed_share: float = MAX_REMOVED_SHARE,
    ) -> RemoteImport:
        """Make the imported entries (source "annuaire") exactly `entries` (checked, one per
        address), in one transaction: add, update, remove; entries added by hand are kept as
        they are. Refused whole when it would remove more than `max_removed_share` of the
        entries imported before, unless `allow_removals` (a truncated file must not empty
        the directory)."""
        ...

    def close(self) -> None: ...
