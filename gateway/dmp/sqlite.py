"""The embedded DMP: XDS registry (metadata) and repository (bytes) in the gateway's SQLite file.

Component "dmp". Bytes are BLOBs committed with their metadata in one transaction
(synchronous=FULL): a document is either wholly filed or absent, and a replacement deprecates the
old version in the same transaction. Authors are indexed per patient, so the access rule is one
indexed look-up.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from gateway import identifiers
from gateway.audit import Recorder, no_record
from gateway.db import atomic, connect, migrate, snapshot
from gateway.dmp.access import (
    HIDEABLE_FROM,
    Decision,
    may_change,
    may_read,
    may_see,
    may_submit,
)
from gateway.dmp.model import (
    AccessDenied,
    Actor,
    DocumentEntry,
    DocumentMetadata,
    DocumentNotFound,
    DocumentStatus,
    DuplicateDocument,
    InvalidDocument,
    StoredDocument,
    Submission,
)
from gateway.errors import GatewayError
from gateway.texts import t

COMPONENT = "dmp"

MIGRATIONS = [
    """
    CREATE TABLE dmp_documents (
        unique_id TEXT PRIMARY KEY,
        patient_ins TEXT NOT NULL,
        class_code TEXT NOT NULL,
        type_code TEXT NOT NULL,
        format_code TEXT NOT NULL,
        creation_time TEXT NOT NULL,
        title TEXT NOT NULL,
        mime_type TEXT NOT NULL,
        author_id TEXT,
        author_address TEXT,
        author_institution TEXT,
        set_id TEXT,
        version INTEGER NOT NULL,
        confidentiality_code TEXT NOT NULL,
        language_code TEXT NOT NULL,
        prescription_id TEXT,
        hash TEXT NOT NULL,
        size INTEGER NOT NULL,
        status TEXT NOT NULL,
        submitted_at TEXT NOT NULL,
        submitted_by TEXT NOT NULL,
        signature_format TEXT,
        replaces TEXT,
        replaced_by TEXT
    );
    CREATE INDEX dmp_documents_patient ON dmp_documents(patient_ins, status, creation_time);
    CREATE INDEX dmp_documents_prescription ON dmp_documents(prescription_id);
    CREATE TABLE dmp_content (
        unique_id TEXT PRIMARY KEY REFERENCES dmp_documents(unique_id) ON DELETE CASCADE,
        content BLOB NOT NULL,
        signature BLOB
    );
    CREATE TABLE dmp_authors (
        unique_id TEXT NOT NULL REFERENCES dmp_documents(unique_id) ON DELETE CASCADE,
        patient_ins TEXT NOT NULL,
        author_key TEXT NOT NULL,
        PRIMARY KEY (unique_id, author_key)
    );
    CREATE INDEX dmp_authors_patient ON dmp_authors(patient_ins, author_key);
    """,
    # Reading `signature IS NOT NULL` from dmp_content walks the content's overflow pages: keep
    # the flag beside the metadata instead (queries list many entries).
    """
    ALTER TABLE dmp_documents ADD COLUMN has_signature INTEGER NOT NULL DEFAULT 0;
    UPDATE dmp_documents SET has_signature = (SELECT c.signature IS NOT NULL FROM dmp_content c
        WHERE c.unique_id = dmp_documents.unique_id);
    """,
    # Documents hidden from some professionals (e.g. a dispensation from the prescriber when the
    # patient objected to prescriber feedback): keys are addresses or national ids, lower case.
    """
    CREATE TABLE dmp_masks (
        unique_id TEXT NOT NULL REFERENCES dmp_documents(unique_id) ON DELETE CASCADE,
        mask_key TEXT NOT NULL,
        PRIMARY KEY (unique_id, mask_key)
    );
    """,
    # XDS entries may name several authors (e.g. the pharmacist and the pharmacy record system).
    """
    ALTER TABLE dmp_documents ADD COLUMN other_authors TEXT NOT NULL DEFAULT '';
    """,
    # Who filed it, apart from who wrote it (XDS: the submission's author vs the document's).
    """
    ALTER TABLE dmp_documents ADD COLUMN submitter_address TEXT;
    """,
]

_UTC = dt.UTC


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=_UTC) if value.tzinfo is None else value.astimezone(_UTC)


def _stamp(value: dt.datetime) -> str:
    """Sortable UTC text, so date ranges are string comparisons on an index."""
    return _utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _unstamp(text: str) -> dt.datetime:
    # fromisoformat reads our stamps (and their Z) in C; strptime took two thirds of a query
    # by patient (two stamps per listed document).
    return dt.datetime.fromisoformat(text)


def sha1_hex(content: bytes) -> str:
    # XDS `hash` is SHA-1 by the standard; it identifies the bytes, it is not a signature.
    return hashlib.sha1(content, usedforsecurity=False).hexdigest().upper()


def _enforce(decision: Decision, actor: Actor) -> None:
    if not decision.granted:
        raise AccessDenied(t(
            "{name} may not do this: {reason}", name=actor.name, reason=decision.reason))


class SQLiteDMP:
    """`DocumentRepository` over one SQLite connection."""

    def __init__(self, conn: sqlite3.Connection, audit: Recorder = no_record) -> None:
        self.conn = conn
        self.audit = audit
        migrate(conn, COMPONENT, MIGRATIONS)

    @classmethod
    def open(cls, path: Path | str, audit: Recorder = no_record) -> SQLiteDMP:
        return cls(connect(path), audit)

    def close(self) -> None:
        self.conn.close()

    # ---- helpers ----

    def _entry(self, row: sqlite3.Row) -> DocumentEntry:
        meta = DocumentMetadata(
            unique_id=row["unique_id"],
            patient_ins=row["patient_ins"],
            class_code=row["class_code"],
            type_code=row["type_code"],
            format_code=row["format_code"],
            creation_time=_unstamp(row["creation_time"]),
            title=row["title"],
            mime_type=row["mime_type"],
            author_id=row["author_id"],
            author_address=row["author_address"],
            author_institution=row["author_institution"],
            set_id=row["set_id"],
            version=row["version"],
            confidentiality_code=row["confidentiality_code"],
            language_code=row["language_code"],
            prescription_id=row["prescription_id"],
            other_authors=tuple(row["other_authors"].split()),
            hash=row["hash"],
            size=row["size"],
            submitter_address=row["submitter_address"],
        )
        return DocumentEntry(
            metadata=meta,
            status=DocumentStatus(row["status"]),
            submitted_at=_unstamp(row["submitted_at"]),
            submitted_by=row["submitted_by"],
            hash=row["hash"],
            size=row["size"],
            has_signature=bool(row["has_signature"]),
            signature_format=row["signature_format"],
            replaces=row["replaces"],
            replaced_by=row["replaced_by"],
            hidden_from=tuple(sorted((row["hidden_from"] or "").split())),
        )

    _SELECT = (
        "SELECT d.*, (SELECT group_concat(m.mask_key, ' ') FROM dmp_masks m"
        " WHERE m.unique_id = d.unique_id) AS hidden_from FROM dmp_documents d"
    )

    def _load(self, unique_id: str) -> DocumentEntry | None:
        row = self.conn.execute(self._SELECT + " WHERE d.unique_id = ?", (unique_id,)).fetchone()
        return None if row is None else self._entry(row)

    def _authored_in(self, patient_ins: str, actor: Actor) -> bool:
        keys = sorted(actor.keys())
        if not keys:
            return False
        marks = ",".join("?" * len(keys))
        row = self.conn.execute(
            f"SELECT 1 FROM dmp_authors WHERE patient_ins = ? AND author_key IN ({marks}) LIMIT 1",  # noqa: S608
            (patient_ins, *keys),
        ).fetchone()
        return row is not None

    def _check(
        self, decision: Decision, actor: Actor, action: str, target: str, **details: Any
    ) -> None:
        """Write the access to the audit log; refuse it when the rule says no."""
        outcome = "granted" if decision.granted else "refused"
        self.audit(
            actor.name, action, target, {"outcome": outcome, "rule": decision.reason, **details}
        )
        if not decision.granted:
            raise AccessDenied(t(
                "{name} may not access this record: {reason}",
                name=actor.name, reason=decision.reason))

    def _require(self, unique_id: str, actor: Actor, action: str) -> DocumentEntry:
        entry = self._load(unique_id)
        if entry is None:
            self.audit(actor.name, action, unique_id, {"outcome": "not-found"})
            raise DocumentNotFound(unique_id)
        return entry

    # ---- filing ----

    def submit(
        self,
        metadata: DocumentMetadata,
        content: bytes,
        *,
        actor: Actor,
        signature: bytes | None = None,
        signature_format: str | None = None,
        replaces: str | None = None,
        hidden_from: Sequence[str] = (),
    ) -> DocumentEntry:
        one = Submission(
            metadata, content, signature, signature_format, replaces, tuple(hidden_from)
        )
        return self.submit_set([one], actor=actor)[0]

    def submit_set(self, submissions: Sequence[Submission], *, actor: Actor) -> list[DocumentEntry]:
        """File several documents in one transaction (one XDS submission set): all or none."""
        try:
            if not submissions:
                raise InvalidDocument("nothing to file: the submission set is empty")
            with atomic(self.conn):
                entries = [self._file(sub, actor=actor) for sub in submissions]
        except GatewayError as exc:
            for sub in submissions:
                self.audit(
                    actor.name,
                    "dmp.submit",
                    sub.metadata.unique_id,
                    {"outcome": "refused", "reason": str(exc), "patient": sub.metadata.patient_ins},
                )
            raise
        for entry in entries:
            self.audit(
                actor.name,
                "dmp.submit",
                entry.unique_id,
                {
                    "outcome": "filed",
                    "patient": entry.metadata.patient_ins,
                    "replaces": entry.replaces,
                },
            )
        return entries

    @staticmethod
    def _checked(sub: Submission) -> tuple[str, str, int]:
        """(INS, hash, size) of a submission whose metadata hold together."""
        metadata, content = sub.metadata, sub.content
        ins = identifiers.ins(metadata.patient_ins, "patient INS")
        if not metadata.unique_id.strip():
            raise InvalidDocument("a document needs a uniqueId")
        for name in ("class_code", "type_code", "format_code", "title"):
            if not str(getattr(metadata, name)).strip():
                raise InvalidDocument(t(
                    "document {unique_id}: {name} is empty",
                    unique_id=metadata.unique_id, name=name))
        digest, size = sha1_hex(content), len(content)
        if metadata.hash and metadata.hash.upper() != digest:
            raise InvalidDocument(
                t(
                    "document {unique_id}: hash {hash} does not match its bytes ({digest})",
                    unique_id=metadata.unique_id, hash=metadata.hash, digest=digest)
            )
        if metadata.size is not None and metadata.size != size:
            raise InvalidDocument(
                t(
                    "document {unique_id}: size {size} does not match its bytes ({size2})",
                    unique_id=metadata.unique_id, size=metadata.size, size2=size)
            )
        return ins, digest, size

    def _file(self, sub: Submission, *, actor: Actor) -> DocumentEntry:
        metadata, content, replaces = sub.metadata, sub.content, sub.replaces
        signature, signature_format, hidden_from = (
            sub.signature,
            sub.signature_format,
            sub.hidden_from,
        )
        ins, digest, size = self._checked(sub)
        with atomic(self.conn):
            _enforce(may_submit(actor), actor)
            if self._load(metadata.unique_id) is not None:
                raise DuplicateDocument(metadata.unique_id)
            set_id, version = metadata.set_id, metadata.version
            if replaces is not None:
                old = self._load(replaces)
                if old is None:
                    raise DocumentNotFound(replaces)
                _enforce(may_change(actor, old), actor)
                if old.metadata.patient_ins != ins:
                    raise InvalidDocument(
                        t(
                            "document {unique_id} cannot replace {replaces}: it belongs to "
                            "another patient", unique_id=metadata.unique_id, replaces=replaces)
                    )
                if old.status is not DocumentStatus.APPROVED:
                    raise InvalidDocument(
                        t(
                            "document {replaces} is already {value}: replace its latest version "
                            "({value2})",
                            replaces=replaces, value=old.status.value,
                            value2=old.replaced_by or 'none')
                    )
                set_id = set_id or old.metadata.set_id
                version = max(version, old.metadata.version + 1)
                self.conn.execute(
                    "UPDATE dmp_documents SET status = 'deprecated', replaced_by = ?"
                    " WHERE unique_id = ?",
                    (metadata.unique_id, replaces),
                )
            self.conn.execute(
                "INSERT INTO dmp_documents (unique_id, patient_ins, class_code, type_code,"
                " format_code, creation_time, title, mime_type, author_id, author_address,"
                " author_institution, set_id, version, confidentiality_code, language_code,"
                " prescription_id, hash, size, status, submitted_at, submitted_by,"
                " signature_format, replaces, has_signature, other_authors, submitter_address)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    metadata.unique_id,
                    ins,
                    metadata.class_code,
                    metadata.type_code,
                    metadata.format_code,
                    _stamp(metadata.creation_time),
                    metadata.title,
                    metadata.mime_type,
                    metadata.author_id,
                    metadata.author_address and metadata.author_address.lower(),
                    metadata.author_institution,
                    set_id,
                    version,
                    metadata.confidentiality_code,
                    metadata.language_code,
                    metadata.prescription_id,
                    digest,
                    size,
                    DocumentStatus.APPROVED.value,
                    _stamp(dt.datetime.now(_UTC)),
                    actor.name,
                    signature_format if signature is not None else None,
                    replaces,
                    int(signature is not None),
                    " ".join(k.strip() for k in metadata.other_authors if k.strip()),
                    metadata.submitter_address and metadata.submitter_address.lower(),
                ),
            )
            self.conn.execute(
                "INSERT INTO dmp_content (unique_id, content, signature) VALUES (?, ?, ?)",
                (metadata.unique_id, content, signature),
            )
            authors = metadata.access_keys()
            self.conn.executemany(
                "INSERT INTO dmp_authors (unique_id, patient_ins, author_key) VALUES (?, ?, ?)",
                [(metadata.unique_id, ins, key) for key in sorted(authors)],
            )
            masks = {k.strip().lower() for k in hidden_from if k.strip()} - authors
            self.conn.executemany(
                "INSERT INTO dmp_masks (unique_id, mask_key) VALUES (?, ?)",
                [(metadata.unique_id, key) for key in sorted(masks)],
            )
            entry = self._load(metadata.unique_id)
        assert entry is not None
        return entry

    # ---- reading ----

    def find(
        self,
        patient_ins: str,
        *,
        actor: Actor,
        class_codes: Sequence[str] = (),
        type_codes: Sequence[str] = (),
        created_from: dt.datetime | None = None,
        created_to: dt.datetime | None = None,
        status: DocumentStatus | None = DocumentStatus.APPROVED,
    ) -> list[DocumentEntry]:
        ins = identifiers.ins(patient_ins, "patient INS")
        where, params = ["d.patient_ins = ?"], [ins]

        def any_of(column: str, values: Iterable[str]) -> None:
            values = list(values)
            if values:
                where.append(f"d.{column} IN ({','.join('?' * len(values))})")
                params.extend(values)

        any_of("class_code", class_codes)
        any_of("type_code", type_codes)
        if created_from is not None:
            where.append("d.creation_time >= ?")
            params.append(_stamp(created_from))
        if created_to is not None:
            where.append("d.creation_time <= ?")
            params.append(_stamp(created_to))
        if status is not None:
            where.append("d.status = ?")
            params.append(status.value)
        keys = sorted(actor.keys())
        if actor.kind in HIDEABLE_FROM and keys:
            where.append(
                "NOT EXISTS (SELECT 1 FROM dmp_masks m WHERE m.unique_id = d.unique_id"  # noqa: S608
                f" AND m.mask_key IN ({','.join('?' * len(keys))}))"
            )
            params.extend(keys)
        # `where` holds only fixed fragments and placeholders; every value is bound.
        sql = self._SELECT + " WHERE " + " AND ".join(where) + " ORDER BY d.creation_time DESC"
        rows: list[sqlite3.Row] = []
        with snapshot(self.conn):
            decision = may_read(actor, ins, self._authored_in(ins, actor))
            if decision.granted:
                rows = self.conn.execute(sql, params).fetchall()
        filters = {
            "class": list(class_codes),
            "type": list(type_codes),
            "from": created_from,
            "to": created_to,
            "status": status,
        }
        self._check(
            decision,
            actor,
            "dmp.query",
            ins,
            filters={k: str(v) for k, v in filters.items() if v},
            count=len(rows) if decision.granted else 0,
        )
        return [self._entry(r) for r in rows]

    def _readable(self, unique_id: str, actor: Actor, action: str) -> DocumentEntry:
        entry = self._require(unique_id, actor, action)
        ins = entry.metadata.patient_ins
        decision = may_read(actor, ins, self._authored_in(ins, actor))
        if decision.granted and not (seen := may_see(actor, entry)).granted:
            decision = seen
        self._check(decision, actor, action, unique_id, patient=ins)
        return entry

    def entry(self, unique_id: str, *, actor: Actor) -> DocumentEntry:
        return self._readable(unique_id, actor, "dmp.entry")

    def retrieve(self, unique_id: str, *, actor: Actor) -> StoredDocument:
        with snapshot(self.conn):
            entry = self._readable(unique_id, actor, "dmp.retrieve")
            row = self.conn.execute(
                "SELECT content, signature FROM dmp_content WHERE unique_id = ?", (unique_id,)
            ).fetchone()
        signature = None if row["signature"] is None else bytes(row["signature"])
        return StoredDocument(entry, bytes(row["content"]), signature)

    # ---- changes ----

    def deprecate(self, unique_id: str, *, actor: Actor) -> bool:
        with atomic(self.conn):
            entry = self._require(unique_id, actor, "dmp.deprecate")
            ins = entry.metadata.patient_ins
            self._check(may_change(actor, entry), actor, "dmp.deprecate", unique_id, patient=ins)
            if entry.status is DocumentStatus.DEPRECATED:
                return False
            self.conn.execute(
                "UPDATE dmp_documents SET status = 'deprecated' WHERE unique_id = ?", (unique_id,)
            )
        return True

    def delete(self, unique_id: str, *, actor: Actor) -> DocumentEntry:
        """Remove the document, its bytes and signature. A version it replaced stays deprecated
        (deleting is not undoing a replacement)."""
        with atomic(self.conn):
            entry = self._require(unique_id, actor, "dmp.delete")
            self._check(
                may_change(actor, entry, delete=True),
                actor,
                "dmp.delete",
                unique_id,
                patient=entry.metadata.patient_ins,
            )
            self.conn.execute("DELETE FROM dmp_documents WHERE unique_id = ?", (unique_id,))
            self.conn.execute(
                "UPDATE dmp_documents SET replaced_by = NULL WHERE replaced_by = ?", (unique_id,)
            )
        return entry
