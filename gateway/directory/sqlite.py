"""The trust directory on SQLite (WAL): the embedded default implementation of `Directory`.

Tables belong to the component "directory" (gateway.db.migrate). Kind-specific identity fields
live in a JSON column; the columns that are searched or must be unique (address, RPPS, ADELI, INS,
FINESS, structure) are real columns with indexes. Each change runs in one IMMEDIATE transaction
that also appends the audit entry, so a refused change leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from gateway import audit
from gateway import identifiers as ids
from gateway.db import connect, migrate, transaction
from gateway.directory import validate as v
from gateway.directory.identity import (
    KIND_CLASS,
    KIND_FIELD,
    default_display_name,
    normalise,
    normalise_remote,
)
from gateway.directory.model import (
    Application,
    Mailbox,
    MailboxKind,
    MailboxState,
    Organisation,
    OrganisationKind,
    Patient,
    Professional,
    RemoteEntry,
    RemoteKind,
    TrustDomain,
)
from gateway.directory.passwords import (
    MIN_PASSWORD_LENGTH,
    check_new_password,
    dummy_verify,
    hash_password,
)
from gateway.directory.passwords import verify_password as _verify
from gateway.directory.repository import (
    Credentials,
    DuplicateMailbox,
    RemoteImport,
    UnknownDomain,
    UnknownMailbox,
    WhitelistChange,
)
from gateway.directory.whitelist import MAX_REMOVED_SHARE, InvalidWhitelist, parse_whitelist
from gateway.errors import Conflict, GatewayError
from gateway.pki.dn import dn_matches, normalise_dn, subject_dn
from gateway.texts import t

COMPONENT = "directory"
MIGRATIONS: list[str] = [
    """
    CREATE TABLE directory_mailbox (
        address TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('PER', 'ORG', 'APP', 'PATIENT')),
        display_name TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'suspended')),
        domain TEXT NOT NULL,
        rpps TEXT UNIQUE,
        adeli TEXT UNIQUE,
        ins TEXT UNIQUE,
        finess TEXT,
        siret TEXT,
        structure TEXT REFERENCES directory_mailbox(address) ON DELETE RESTRICT,
        details TEXT NOT NULL,
        search TEXT NOT NULL,
        password_hash TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX directory_mailbox_kind ON directory_mailbox(kind);
    CREATE INDEX directory_mailbox_domain ON directory_mailbox(domain);
    CREATE INDEX directory_mailbox_finess ON directory_mailbox(finess);
    CREATE INDEX directory_mailbox_structure ON directory_mailbox(structure);
    CREATE TABLE directory_domain (
        name TEXT PRIMARY KEY,
        ours INTEGER NOT NULL DEFAULT 0,
        source TEXT NOT NULL CHECK (source IN ('own', 'whitelist', 'manual')),
        operator_dns TEXT NOT NULL DEFAULT '[]',
        description TEXT,
        contacts TEXT NOT NULL DEFAULT '{}',
        updated TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE directory_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # Mailboxes hosted by other operators (issue 20): never log in, hold no mail here.
    """
    CREATE TABLE directory_remote (
        address TEXT PRIMARY KEY,
        domain TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('professional', 'pharmacy', 'structure')),
        name TEXT NOT NULL,
        rpps TEXT,
        adeli TEXT,
        finess TEXT,
        siret TEXT,
        profession TEXT,
        specialty TEXT,
        organisation TEXT,
        source TEXT NOT NULL CHECK (source IN ('manual', 'annuaire')),
        search TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX directory_remote_domain ON directory_remote(domain);
    CREATE INDEX directory_remote_source ON directory_remote(source);
    """,
]

# The columns of directory_remote that hold a RemoteEntry's fields, in the entry's order.
_REMOTE_FIELDS = ("address", "kind", "name", "rpps", "adeli", "finess", "siret", "profession",
                  "specialty", "organisation", "source")

@functools.lru_cache(maxsize=4096)
def _normalised_dn(dn: str) -> str | None:
    # The whitelist repeats a few dozen operator DNs over hundreds of domains: normalise once.
    try:
        return normalise_dn(dn)
    except ValueError:
        return None


NO_LIMIT = 1 << 62


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _escape_like(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _details_json(identity: Any) -> str:
    data = dataclasses.asdict(identity)
    data.pop("structure", None)  # a real column (foreign key)
    return json.dumps(data, ensure_ascii=False, sort_keys=True, default=str)


def _identity(kind: MailboxKind, details: str, structure: str | None) -> Any:
    data = json.loads(details)
    if kind is MailboxKind.PER:
        data["savoir_faire"] = tuple(data.get("savoir_faire") or ())
        return Professional(**data, structure=structure)
    if kind is MailboxKind.ORG:
        data["kind"] = OrganisationKind(data["kind"])
        return Organisation(**data)
    if kind is MailboxKind.PATIENT:
        data["birth_date"] = date.fromisoformat(data["birth_date"])
        return Patient(**data)
    return Application(**data)


class SQLiteDirectory:
    """`Directory` on one SQLite database. Thread-safe (one lock around the connection)."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        patient_domain: str,
        audit_path: Path | None = None,
        actor: str = "gateway",
        min_password_length: int = MIN_PASSWORD_LENGTH,
    ) -> None:
        self.conn = conn
        self.patient_domain = patient_domain.lower()
        self.audit_path = audit_path
        self.actor = actor
        self.min_password_length = min_password_length
        self._lock = threading.RLock()
        migrate(conn, COMPONENT, MIGRATIONS)

    @classmethod
    def open(
        cls,
        path: Path | str,
        *,
        patient_domain: str,
        audit_path: Path | None = None,
        actor: str = "gateway",
        min_password_length: int = MIN_PASSWORD_LENGTH,
    ) -> SQLiteDirectory:
        return cls(
            connect(path),
            patient_domain=patient_domain,
            audit_path=audit_path,
            actor=actor,
            min_password_length=min_password_length,
        )

    def close(self) -> None:
        self.conn.close()

    # --- plumbing --------------------------------------------------------------------------

    @contextmanager
    def _change(self) -> Iterator[sqlite3.Connection]:
        with self._lock, transaction(self.conn) as conn:
            yield conn

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self.conn.execute(sql, params).fetchall()

    def _audit(self, action: str, target: str, **details: Any) -> None:
        # Inside the transaction: if the entry cannot be written, the change is rolled back.
        if self.audit_path is not None:
            audit.append(self.audit_path, self.actor, action, target, details)

    def _mailbox(self, row: sqlite3.Row) -> Mailbox:
        kind = MailboxKind(row["kind"])
        identity = _identity(kind, row["details"], row["structure"])
        return Mailbox(
            address=row["address"],
            kind=kind,
            display_name=row["display_name"],
            state=MailboxState(row["state"]),
            created_at=datetime.fromisoformat(row["created_at"]),
            updated_at=datetime.fromisoformat(row["updated_at"]),
            has_password=row["password_hash"] is not None,
            **{KIND_FIELD[kind]: identity},
        )

    def _row(self, address: str) -> sqlite3.Row | None:
        rows = self._read("SELECT * FROM directory_mailbox WHERE address = ?", (address.lower(),))
        return rows[0] if rows else None

    def _owned_address(self, conn: sqlite3.Connection, address: str, kind: MailboxKind) -> str:
        addr = v.address(address)
        dom = addr.rpartition("@")[2]
        own = [r[0] for r in conn.execute("SELECT name FROM directory_domain WHERE ours = 1")]
        if kind is MailboxKind.PATIENT:
            if dom != self.patient_domain:
                raise v.InvalidField(
                    "email", addr, t("a patient's address is in {domain}",
                                     domain=self.patient_domain)
                )
        elif dom == self.patient_domain:
            raise v.InvalidField("email", addr, t("{domain} holds patients' mailboxes only",
                                                  domain=dom))
        if not own:
            raise GatewayError(
                "directory: this gateway has no domain of its own yet: run `mssgw init` first"
            )
        if dom not in own:
            raise v.InvalidField(
                "email",
                addr,
                t("{domain} is not one of our domains ({ours}); add it with"
                  " `mssgw trust add-domain {domain} --own`",
                  domain=dom, ours=", ".join(sorted(own)) or "none"),
            )
        return addr

    def _check_unique(
        self, conn: sqlite3.Connection, identity: Any, *, exclude: str | None = None
    ) -> None:
        for column, value in (
            ("rpps", getattr(identity, "rpps", None)),
            ("adeli", getattr(identity, "adeli", None)),
            ("ins", getattr(identity, "ins", None)),
        ):
            if not value:
                continue
            row = conn.execute(
                f"SELECT address FROM directory_mailbox WHERE {column} = ?",  # noqa: S608
                (value,),
            ).fetchone()
            if row and row[0] != exclude:
                raise DuplicateMailbox(column, value, row[0])

    def _check_structure(self, conn: sqlite3.Connection, structure: str | None) -> None:
        if not structure:
            return
        row = conn.execute(
            "SELECT kind FROM directory_mailbox WHERE address = ?", (structure,)
        ).fetchone()
        if row is None or row[0] != MailboxKind.ORG.value:
            raise v.InvalidField(
                "structure", structure, "must be the address of an organisation (ORG) mailbox"
            )

    def _search_text(self, address: str, display: str, identity: Any) -> str:
        values = [str(x) for x in dataclasses.asdict(identity).values() if x is not None]
        return v.folded(address, display, *values)

    def _add(
        self, kind: MailboxKind, address: str, identity: Any, display_name: str | None
    ) -> Mailbox:
        identity = normalise(kind, identity)
        display = v.text(display_name, "display-name") if display_name else None
        display = display or default_display_name(identity)
        with self._change() as conn:
            addr = self._owned_address(conn, address, kind)
            row = conn.execute(
                "SELECT address FROM directory_mailbox WHERE address = ?", (addr,)
            ).fetchone()
            if row:
                raise DuplicateMailbox("email", addr)
            self._check_unique(conn, identity)
            self._check_structure(conn, getattr(identity, "structure", None))
            now = _now()
            conn.execute(
                "INSERT INTO directory_mailbox (address, kind, display_name, state, domain, rpps,"
                " adeli, ins, finess, siret, structure, details, search, created_at, updated_at)"
                " VALUES (?, ?, ?, 'active', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    addr,
                    kind.value,
                    display,
                    addr.rpartition("@")[2],
                    getattr(identity, "rpps", None),
                    getattr(identity, "adeli", None),
                    getattr(identity, "ins", None),
                    getattr(identity, "finess", None),
                    getattr(identity, "siret", None),
                    getattr(identity, "structure", None),
                    _details_json(identity),
                    self._search_text(addr, display, identity),
                    now,
                    now,
                ),
            )
            self._audit("directory.add", addr, kind=kind.value, display_name=display)
        return self.require(addr)

    # --- mailboxes ---------------------------------------------------------------------------

    def add_professional(
        self, address: str, professional: Professional, display_name: str | None = None
    ) -> Mailbox:
        return self._add(MailboxKind.PER, address, professional, display_name)

    def add_organisation(
        self, address: str, organisation: Organisation, display_name: str | None = None
    ) -> Mailbox:
        return self._add(MailboxKind.ORG, address, organisation, display_name)

    def add_patient(self, patient: Patient, address: str | None = None) -> Mailbox:
        if address is None:
            address = f"{ids.ins(patient.ins).lower()}@{self.patient_domain}"
        return self._add(MailboxKind.PATIENT, address, patient, None)

    def add_application(self, address: str, application: Application) -> Mailbox:
        return self._add(MailboxKind.APP, address, application, None)

    def get(self, address: str) -> Mailbox | None:
        row = self._row(address.strip())
        return self._mailbox(row) if row else None

    def require(self, address: str) -> Mailbox:
        mailbox = self.get(address)
        if mailbox is None:
            raise UnknownMailbox(address.strip().lower())
        return mailbox

    def _find_one(self, column: str, value: str) -> Mailbox | None:
        rows = self._read(
            f"SELECT * FROM directory_mailbox WHERE {column} = ?", (value,)  # noqa: S608
        )
        return self._mailbox(rows[0]) if rows else None

    def find_by_rpps(self, rpps: str) -> Mailbox | None:
        return self._find_one("rpps", ids.rpps(rpps))

    def find_by_adeli(self, adeli: str) -> Mailbox | None:
        return self._find_one("adeli", ids.adeli(adeli))

    def find_by_ins(self, ins: str) -> Mailbox | None:
        return self._find_one("ins", ids.ins(ins))

    def find_by_finess(self, finess: str) -> list[Mailbox]:
        rows = self._read(
            "SELECT * FROM directory_mailbox WHERE finess = ? ORDER BY address",
            (ids.finess(finess),),
        )
        return [self._mailbox(r) for r in rows]

    def members_of(self, structure: str) -> list[Mailbox]:
        rows = self._read(
            "SELECT * FROM directory_mailbox WHERE structure = ? ORDER BY address",
            (structure.strip().lower(),),
        )
        return [self._mailbox(r) for r in rows]

    @staticmethod
    def _mailbox_filter(
        kind: MailboxKind | None, domain: str | None, search: str | None,
        state: MailboxState | None,
    ) -> tuple[str, list[Any]]:
        where: list[str] = []
        params: list[Any] = []
        if kind is not None:
            where.append("kind = ?")
            params.append(MailboxKind(kind).value)
        if domain:
            where.append("domain = ?")
            params.append(domain.strip().lower().rstrip("."))
        if state is not None:
            where.append("state = ?")
            params.append(MailboxState(state).value)
        for word in v.folded(search or "").split():
            where.append("search LIKE ? ESCAPE '\\'")
            params.append(f"%{_escape_like(word)}%")
        return (" WHERE " + " AND ".join(where)) if where else "", params

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
        where, params = self._mailbox_filter(kind, domain, search, state)
        sql = "SELECT * FROM directory_mailbox" + where + " ORDER BY address"  # noqa: S608
        if limit is not None or offset:
            # (no limit with an offset: a bound no store reaches; PostgreSQL refuses -1)
            sql += " LIMIT ? OFFSET ?"
            params += [NO_LIMIT if limit is None else max(limit, 0), max(offset, 0)]
        return [self._mailbox(r) for r in self._read(sql, params)]

    def count_mailboxes(
        self,
        *,
        kind: MailboxKind | None = None,
        domain: str | None = None,
        search: str | None = None,
        state: MailboxState | None = None,
    ) -> int:
        where, params = self._mailbox_filter(kind, domain, search, state)
        rows = self._read("SELECT count(*) FROM directory_mailbox" + where, params)  # noqa: S608
        return int(rows[0][0])

    def count_by_kind(self) -> dict[MailboxKind, int]:
        rows = self._read("SELECT kind, count(*) FROM directory_mailbox GROUP BY kind")
        return {MailboxKind(r[0]): int(r[1]) for r in rows}

    def update(self, address: str, **changes: Any) -> Mailbox:
        current = self.require(address)
        kind = current.kind
        identity = getattr(current, KIND_FIELD[kind])
        display_name = changes.pop("display_name", None)
        allowed = {f.name for f in dataclasses.fields(KIND_CLASS[kind])}
        for key in changes:
            if key not in allowed:
                raise v.InvalidField(
                    key.replace("_", "-"), changes[key],
                    t("does not apply to a {kind} mailbox", kind=kind.value)
                )
        if kind is MailboxKind.PATIENT and "ins" in changes and changes["ins"] != identity.ins:
            raise Conflict(
                "ins: a patient's INS is their address: delete the mailbox and add it again"
            )
        if not changes and display_name is None:
            raise GatewayError("update: nothing to change (give at least one field option)")
        new = normalise(kind, dataclasses.replace(identity, **changes))
        if display_name is not None:
            display = v.text(display_name, "display-name")
        elif current.display_name == default_display_name(identity):
            display = default_display_name(new)  # an automatic name follows the identity
        else:
            display = current.display_name
        with self._change() as conn:
            self._check_unique(conn, new, exclude=current.address)
            self._check_structure(conn, getattr(new, "structure", None))
            conn.execute(
                "UPDATE directory_mailbox SET display_name = ?, rpps = ?, adeli = ?, finess = ?,"
                " siret = ?, structure = ?, details = ?, search = ?, updated_at = ?"
                " WHERE address = ?",
                (
                    display,
                    getattr(new, "rpps", None),
                    getattr(new, "adeli", None),
                    getattr(new, "finess", None),
                    getattr(new, "siret", None),
                    getattr(new, "structure", None),
                    _details_json(new),
                    self._search_text(current.address, display, new),
                    _now(),
                    current.address,
                ),
            )
            changed = {
                k: getattr(new, k)
                for k in changes
                if getattr(new, k) != getattr(identity, k)
            }
            if display != current.display_name:
                changed["display_name"] = display
            self._audit("directory.update", current.address, changes=changed)
        return self.require(current.address)

    def _set_state(self, address: str, state: MailboxState, action: str) -> Mailbox:
        current = self.require(address)
        if current.state is state:
            raise Conflict(t("state: {address} is already {state}", address=current.address,
                             state=state.value))
        with self._change() as conn:
            conn.execute(
                "UPDATE directory_mailbox SET state = ?, updated_at = ? WHERE address = ?",
                (state.value, _now(), current.address),
            )
            self._audit(action, current.address)
        return self.require(current.address)

    def suspend(self, address: str) -> Mailbox:
        return self._set_state(address, MailboxState.SUSPENDED, "directory.suspend")

    def resume(self, address: str) -> Mailbox:
        return self._set_state(address, MailboxState.ACTIVE, "directory.resume")

    def delete(self, address: str) -> None:
        current = self.require(address)
        with self._change() as conn:
            members = [
                r[0]
                for r in conn.execute(
                    "SELECT address FROM directory_mailbox WHERE structure = ? ORDER BY address",
                    (current.address,),
                )
            ]
            if members:
                raise Conflict(t(
                    "structure: {address} is the structure of {count} professional(s)"
                    " ({members}); move or delete them first",
                    address=current.address, count=len(members), members=", ".join(members[:3])
                ))
            conn.execute("DELETE FROM directory_mailbox WHERE address = ?", (current.address,))
            self._audit("directory.delete", current.address, kind=current.kind.value)

    def set_password(self, address: str, password: str) -> None:
        current = self.require(address)
        check_new_password(password, self.min_password_length)
        encoded = hash_password(password)  # slow: computed before taking the write lock
        with self._change() as conn:
            conn.execute(
                "UPDATE directory_mailbox SET password_hash = ?, updated_at = ? WHERE address = ?",
                (encoded, _now(), current.address),
            )
            self._audit("directory.set-password", current.address)

    def credentials(self, address: str) -> Credentials | None:
        rows = self._read(
            "SELECT address, state, password_hash FROM directory_mailbox WHERE address = ?",
            (address.strip().lower(),),
        )
        if not rows:
            return None
        r = rows[0]
        return Credentials(r["address"], MailboxState(r["state"]), r["password_hash"])

    def verify_password(self, address: str, password: str) -> bool:
        cred = self.credentials(address)
        if cred is None or cred.password_hash is None:
            dummy_verify(password)
            return False
        ok = _verify(password, cred.password_hash)
        return ok and cred.state is MailboxState.ACTIVE

    # --- trust-space domains -----------------------------------------------------------------

    def _domain(self, row: sqlite3.Row) -> TrustDomain:
        dns = tuple(json.loads(row["operator_dns"]))
        return TrustDomain(
            name=row["name"],
            ours=bool(row["ours"]),
            operator_dn=dns[0] if dns else None,
            description=row["description"],
            contacts=json.loads(row["contacts"]),
            updated=row["updated"],
            operator_dns=dns,
            source=row["source"],
        )

    def get_domain(self, name: str) -> TrustDomain | None:
        rows = self._read(
            "SELECT * FROM directory_domain WHERE name = ?", (name.strip().lower().rstrip("."),)
        )
        return self._domain(rows[0]) if rows else None

    def list_domains(
        self, *, search: str | None = None, ours: bool | None = None
    ) -> list[TrustDomain]:
        sql = "SELECT * FROM directory_domain"
        params: list[Any] = []
        where: list[str] = []
        if ours is not None:
            where.append("ours = ?")
            params.append(int(ours))
        for word in (search or "").split():
            where.append(
                "(name LIKE ? ESCAPE '\\' OR description LIKE ? ESCAPE '\\'"
                " OR operator_dns LIKE ? ESCAPE '\\')"
            )
            params += [f"%{_escape_like(word)}%"] * 3
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [self._domain(r) for r in self._read(sql + " ORDER BY ours DESC, name", params)]

    def register_own_domains(self, names: Sequence[str]) -> list[str]:
        added: list[str] = []
        with self._change() as conn:
            for raw in names:
                name = v.domain_name(raw)
                row = conn.execute(
                    "SELECT ours FROM directory_domain WHERE name = ?", (name,)
                ).fetchone()
                if row and row[0]:
                    continue
                now = _now()
                conn.execute(
                    "INSERT INTO directory_domain (name, ours, source, created_at, updated_at)"
                    " VALUES (?, 1, 'own', ?, ?) ON CONFLICT(name) DO UPDATE SET ours = 1,"
                    " source = 'own', operator_dns = '[]', updated_at = excluded.updated_at",
                    (name, now, now),
                )
                self._audit("trust.add-domain", name, ours=True)
                added.append(name)
        return added

    def add_domain(
        self,
        name: str,
        operator_dns: Sequence[str] = (),
        *,
        ours: bool = False,
        description: str | None = None,
    ) -> TrustDomain:
        domain = v.domain_name(name)
        dns = [" ".join(dn.split()) for dn in operator_dns if dn.strip()]
        for dn in dns:
            try:
                normalise_dn(dn)
            except ValueError:
                raise v.InvalidField(
                    "dn", dn, "not an RFC 4514 distinguished name (e.g. CN=mx.example.fr,O=X,C=FR)"
                ) from None
        if ours and dns:
            raise v.InvalidField("dn", dns[0], "our own domains carry no peer certificate DN")
        if not ours and not dns:
            raise v.InvalidField(
                "dn", "", "a peer domain needs the subject DN of its operator's certificate"
            )
        desc = v.text(description, "description", required=False) or None
        with self._change() as conn:
            row = conn.execute(
                "SELECT source FROM directory_domain WHERE name = ?", (domain,)
            ).fetchone()
            if row:
                raise Conflict(t("domain: {domain!r} is already listed (source: {source})",
                                 domain=domain, source=row[0]))
            now = _now()
            conn.execute(
                "INSERT INTO directory_domain (name, ours, source, operator_dns, description,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    domain,
                    int(ours),
                    "own" if ours else "manual",
                    json.dumps(dns, ensure_ascii=False),
                    desc,
                    now,
                    now,
                ),
            )
            self._audit("trust.add-domain", domain, ours=ours, operator_dns=dns)
        found = self.get_domain(domain)
        assert found is not None
        return found

    def remove_domain(self, name: str) -> None:
        domain = v.domain_name(name)
        with self._change() as conn:
            if conn.execute(
                "SELECT 1 FROM directory_domain WHERE name = ?", (domain,)
            ).fetchone() is None:
                raise UnknownDomain(domain)
            (count,) = conn.execute(
                "SELECT count(*) FROM directory_mailbox WHERE domain = ?", (domain,)
            ).fetchone()
            if count:
                raise Conflict(t(
                    "domain: {domain!r} still holds {count} mailbox(es); delete them first",
                    domain=domain, count=count))
            conn.execute("DELETE FROM directory_domain WHERE name = ?", (domain,))
            self._audit("trust.remove-domain", domain)

    def is_own_domain(self, name: str) -> bool:
        d = self.get_domain(name)
        return d is not None and d.ours

    def is_trusted_domain(self, name: str) -> bool:
        return self.get_domain(name) is not None

    def expected_operator_dns(self, domain: str) -> tuple[str, ...]:
        d = self.get_domain(domain)
        return d.operator_dns if d is not None and not d.ours else ()

    def expected_operator_dn(self, domain: str) -> str | None:
        dns = self.expected_operator_dns(domain)
        return dns[0] if dns else None

    def peer_certificate_matches(self, domain: str, subject: Any) -> bool:
        return any(dn_matches(dn, subject) for dn in self.expected_operator_dns(domain))

    def is_trust_space_operator(self, subject: Any) -> bool:
        text = subject_dn(subject) if isinstance(subject, x509.Name) else str(subject)
        key = _normalised_dn(text)
        if key is None:
            return False
        rows = self._read(
            "SELECT DISTINCT j.value FROM directory_domain AS d, json_each(d.operator_dns) AS j"
            " WHERE d.ours = 0"
        )
        return any(_normalised_dn(r[0]) == key for r in rows)

    def import_whitelist(
        self,
        path: str,
        *,
        allow_older: bool = False,
        allow_removals: bool = False,
        max_removed_share: float = MAX_REMOVED_SHARE,
    ) -> WhitelistChange:
        p = Path(path)
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise GatewayError(t("whitelist: cannot read {path}: {reason}", path=str(p),
                                 reason=exc.strerror)) from None
        wl = parse_whitelist(data, source=p.name)
        warnings = list(wl.warnings)
        added: list[str] = []
        changed: list[str] = []
        with self._change() as conn:
            previous = self.whitelist_generated()
            if previous and wl.generated and wl.generated < previous and not allow_older:
                raise InvalidWhitelist(t(
                    "{file}: generated {generated}, older than the list already imported"
                    " ({previous}): refused (use --allow-older to import it anyway)",
                    file=p.name, generated=wl.generated, previous=previous))
            existing = {
                r["name"]: r for r in conn.execute("SELECT * FROM directory_domain")
            }
            now = _now()
            for name, dom in sorted(wl.domains.items()):
                old = existing.get(name)
                if old is not None and old["ours"]:
                    warnings.append(t("{name} is one of our own domains: its entry is ignored",
                                      name=name))
                    continue
                values = (
                    json.dumps(list(dom.operator_dns), ensure_ascii=False),
                    dom.description,
                    json.dumps(dom.contacts, ensure_ascii=False, sort_keys=True),
                    dom.updated,
                    now,
                    name,
                )
                if old is None:
                    conn.execute(
                        "INSERT INTO directory_domain (operator_dns, description, contacts,"
                        " updated, updated_at, name, ours, source, created_at)"
                        " VALUES (?, ?, ?, ?, ?, ?, 0, 'whitelist', ?)",
                        (*values, now),
                    )
                    added.append(name)
                    continue
                if tuple(json.loads(old["operator_dns"])) != dom.operator_dns:
                    changed.append(name)
                conn.execute(
                    "UPDATE directory_domain SET operator_dns = ?, description = ?, contacts = ?,"
                    " updated = ?, updated_at = ?, source = 'whitelist' WHERE name = ?",
                    values,
                )
            listed = [name for name, old in existing.items() if old["source"] == "whitelist"]
            removed = sorted(name for name in listed if name not in wl.domains)
            if len(removed) > max_removed_share * len(listed) and not allow_removals:
                raise InvalidWhitelist(t(
                    "{file}: would remove {removed} of the {listed} peer domains imported from"
                    " the whitelist ({share:.0%}), more than the {allowed:.0%} allowed ([trust]"
                    " max_removed_share): refused (check the file; use --allow-removals to"
                    " import it anyway)", file=p.name, removed=len(removed), listed=len(listed),
                    share=len(removed) / len(listed), allowed=max_removed_share)
                )
            for name in removed:
                conn.execute("DELETE FROM directory_domain WHERE name = ?", (name,))
            if wl.generated:
                conn.execute(
                    "INSERT INTO directory_meta (key, value) VALUES ('whitelist_generated', ?)"
                    " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (wl.generated,),
                )
            result = WhitelistChange(
                generated=wl.generated,
                entries=wl.entries,
                domains=len(wl.domains),
                added=tuple(added),
                removed=tuple(removed),
                changed=tuple(changed),
                warnings=tuple(warnings),
            )
            self._audit(
                "trust.import-whitelist",
                str(p.resolve()),
                generated=wl.generated,
                added=len(added),
                removed=removed,
                changed=changed,
            )
        return result

    def whitelist_generated(self) -> str | None:
        rows = self._read("SELECT value FROM directory_meta WHERE key = 'whitelist_generated'")
        return rows[0][0] if rows else None

    # --- mailboxes hosted by other operators -------------------------------------------------

    @staticmethod
    def _remote(row: sqlite3.Row) -> RemoteEntry:
        return RemoteEntry(**{f: row[f] for f in _REMOTE_FIELDS if f != "kind"},
                           kind=RemoteKind(row["kind"]),
                           updated_at=datetime.fromisoformat(row["updated_at"]))

    @staticmethod
    def _remote_row(entry: RemoteEntry, now: str) -> tuple[Any, ...]:
        values = [getattr(entry, f) for f in _REMOTE_FIELDS]
        values[1] = entry.kind.value
        search = v.folded(entry.address, entry.name, entry.rpps, entry.adeli, entry.finess,
                          entry.siret, entry.organisation)
        return (*values, entry.domain, search, now)

    _REMOTE_INSERT = (
        "INSERT INTO directory_remote (address, kind, name, rpps, adeli, finess, siret,"
        " profession, specialty, organisation, source, domain, search, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(address) DO UPDATE SET"
        " kind = excluded.kind, name = excluded.name, rpps = excluded.rpps,"
        " adeli = excluded.adeli, finess = excluded.finess, siret = excluded.siret,"
        " profession = excluded.profession, specialty = excluded.specialty,"
        " organisation = excluded.organisation, source = excluded.source,"
        " domain = excluded.domain, search = excluded.search, updated_at = excluded.updated_at"
    )

    def _remote_domain_refusal(self, conn: sqlite3.Connection, address: str) -> str | None:
        dom = address.rpartition("@")[2]
        row = conn.execute("SELECT ours FROM directory_domain WHERE name = ?", (dom,)).fetchone()
        if (row is not None and row[0]) or dom == self.patient_domain:
            return (f"{dom} is one of our own domains: its mailboxes are added with"
                    " `mssgw directory add-professional` / `add-organisation`")
        if dom.startswith("patient."):
            return f"{dom} is a patients' domain: remote entries are professionals and structures"
        if row is None:
            return (f"{dom} is not a trust-space domain: import the whitelist (`mssgw trust"
                    f" import-whitelist`) or add it (`mssgw trust add-domain {dom} --dn ...`)")
        return None

    def add_remote(self, entry: RemoteEntry) -> RemoteEntry:
        entry = normalise_remote(dataclasses.replace(entry, source="manual"))
        with self._change() as conn:
            refusal = self._remote_domain_refusal(conn, entry.address)
            if refusal is not None:
                raise v.InvalidField("email", entry.address, refusal)
            row = conn.execute("SELECT source FROM directory_remote WHERE address = ?",
                               (entry.address,)).fetchone()
            if row is not None and row[0] == "manual":
                raise DuplicateMailbox("email", entry.address)
            conn.execute(self._REMOTE_INSERT, self._remote_row(entry, _now()))
            self._audit("directory.add-remote", entry.address, kind=entry.kind.value,
                        name=entry.name, replaced_imported=row is not None)
        found = self.get_remote(entry.address)
        assert found is not None
        return found

    def get_remote(self, address: str) -> RemoteEntry | None:
        rows = self._read("SELECT * FROM directory_remote WHERE address = ?",
                          (address.strip().lower(),))
        return self._remote(rows[0]) if rows else None

    def list_remote(
        self,
        *,
        kind: RemoteKind | None = None,
        domain: str | None = None,
        search: str | None = None,
        source: str | None = None,
        limit: int | None = None,
    ) -> list[RemoteEntry]:
        where: list[str] = []
        params: list[Any] = []
        if kind is not None:
            where.append("kind = ?")
            params.append(RemoteKind(kind).value)
        if domain:
            where.append("domain = ?")
            params.append(domain.strip().lower().rstrip("."))
        if source:
            where.append("source = ?")
            params.append(source)
        for word in v.folded(search or "").split():
            where.append("search LIKE ? ESCAPE '\\'")
            params.append(f"%{_escape_like(word)}%")
        sql = "SELECT * FROM directory_remote"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY address"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(max(0, int(limit)))
        return [self._remote(r) for r in self._read(sql, params)]

    def remove_remote(self, address: str) -> None:
        addr = address.strip().lower()
        with self._change() as conn:
            row = conn.execute("SELECT source FROM directory_remote WHERE address = ?",
                               (addr,)).fetchone()
            if row is None:
                raise UnknownMailbox(addr)
            conn.execute("DELETE FROM directory_remote WHERE address = ?", (addr,))
            self._audit("directory.remove-remote", addr, source=row[0])

    def import_remote(
        self,
        entries: Sequence[RemoteEntry],
        *,
        source_name: str = "",
        allow_removals: bool = False,
        max_removed_share: float = MAX_REMOVED_SHARE,
    ) -> RemoteImport:
        checked: dict[str, RemoteEntry] = {}
        for entry in entries:
            e = normalise_remote(dataclasses.replace(entry, source="annuaire"))
            checked.setdefault(e.address, e)
        now = _now()
        with self._change() as conn:
            own = {r[0] for r in conn.execute("SELECT name FROM directory_domain WHERE ours = 1")}
            own.add(self.patient_domain)
            trusted = {r[0] for r in conn.execute("SELECT name FROM directory_domain")}
            existing = {r["address"]: r for r in conn.execute("SELECT * FROM directory_remote")}
            writes: list[tuple[Any, ...]] = []
            added = updated = unchanged = manual = ours = outside = 0
            for address, e in checked.items():
                if e.domain in own:
                    ours += 1
                    continue
                old = existing.get(address)
                if old is not None and old["source"] == "manual":
                    manual += 1
                    continue
                if e.domain not in trusted:
                    outside += 1
                row = self._remote_row(e, now)
                if old is None:
                    added += 1
                elif tuple(old[f] for f in _REMOTE_FIELDS) == row[:len(_REMOTE_FIELDS)]:
                    unchanged += 1
                    continue
                else:
                    updated += 1
                writes.append(row)
            before = [a for a, r in existing.items() if r["source"] == "annuaire"]
            removed = [a for a in before if a not in checked or checked[a].domain in own]
            if before and len(removed) > max_removed_share * len(before) and not allow_removals:
                raise Conflict(t(
                    "{file}: would remove {removed} of the {before} remote entries imported"
                    " before ({share:.0%}), more than the {allowed:.0%} allowed ([trust]"
                    " max_removed_share): refused (check the file; use --allow-removals to"
                    " import it anyway)", file=source_name or "import", removed=len(removed),
                    before=len(before), share=len(removed) / len(before),
                    allowed=max_removed_share))
            conn.executemany(self._REMOTE_INSERT, writes)
            conn.executemany("DELETE FROM directory_remote WHERE address = ?",
                             [(a,) for a in removed])
            result = RemoteImport(entries=len(checked), added=added, updated=updated,
                                  removed=len(removed), unchanged=unchanged, manual=manual,
                                  ours=ours, outside_trust_space=outside)
            self._audit("directory.import-remote", source_name or "-", **result.as_dict())
        return result
