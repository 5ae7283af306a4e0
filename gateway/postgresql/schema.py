"""The PostgreSQL schema: one list of versioned migrations per component, as on SQLite
(`gateway.db.apply_migrations` runs both), applied by `mssgw init` (`migrate_all`) under an
advisory lock so that two nodes initialising at once do it once.

The repositories shared with SQLite keep their column types (ISO dates as TEXT, flags as
INTEGER, bytes as BYTEA): one SQL text serves both. Tables of the PostgreSQL-only stores (the
mail store, the queue, the audit log) are typed for PostgreSQL. Never edit a released
migration: append one.
"""

from __future__ import annotations

import psycopg

from gateway.db import apply_migrations
from gateway.errors import GatewayError
from gateway.postgresql.sql import Connection

MIGRATIONS: dict[str, list[str]] = {
    "directory": [
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
        # Mailboxes hosted by other operators (issue 20).
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
    ],
    "auth": [
        """
        CREATE TABLE auth_failure (scope TEXT NOT NULL, key TEXT NOT NULL,
                                   at DOUBLE PRECISION NOT NULL);
        CREATE INDEX auth_failure_key ON auth_failure(scope, key, at);
        CREATE INDEX auth_failure_at ON auth_failure(at);
        CREATE TABLE auth_verified (key BYTEA PRIMARY KEY, hash_digest BYTEA NOT NULL,
                                    expires DOUBLE PRECISION NOT NULL);
        CREATE INDEX auth_verified_expires ON auth_verified(expires);
        """,
    ],
    "smtp": [
        """
        CREATE TABLE smtp_contact (
            patient TEXT NOT NULL, correspondent TEXT NOT NULL,
            first_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (patient, correspondent));
        CREATE TABLE smtp_thread_message (
            message_id TEXT NOT NULL, patient TEXT NOT NULL, thread TEXT NOT NULL,
            PRIMARY KEY (message_id, patient));
        CREATE TABLE smtp_thread_closed (
            thread TEXT NOT NULL, patient TEXT NOT NULL, closed_by TEXT NOT NULL,
            at DOUBLE PRECISION NOT NULL, PRIMARY KEY (thread, patient));
        """,
    ],
    "prescriptions": [
        """
        CREATE TABLE prescriptions (
            identifier TEXT PRIMARY KEY,
            prescriber_address TEXT NOT NULL,
            prescriber_rpps TEXT,
            patient_ins TEXT NOT NULL,
            patient_address TEXT NOT NULL,
            prescribed_at TEXT NOT NULL,
            prescribed_on TEXT NOT NULL,
            validity_end TEXT NOT NULL,
            dispensable_until TEXT NOT NULL,
            status TEXT NOT NULL,
            objects_to_feedback INTEGER NOT NULL DEFAULT 0,
            document_id TEXT,
            registered_at TEXT NOT NULL,
            cancelled_at TEXT,
            cancelled_by TEXT,
            cancel_reason TEXT
        );
        CREATE INDEX prescriptions_patient ON prescriptions(patient_ins);
        CREATE INDEX prescriptions_prescriber ON prescriptions(prescriber_address);
        CREATE INDEX prescriptions_rpps ON prescriptions(prescriber_rpps);
        CREATE INDEX prescriptions_date ON prescriptions(prescribed_on);
        CREATE INDEX prescriptions_status ON prescriptions(status, validity_end);
        CREATE TABLE prescription_lines (
            identifier TEXT NOT NULL REFERENCES prescriptions(identifier) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            line_id TEXT,
            label TEXT NOT NULL,
            cis TEXT,
            quantity TEXT,
            quantity_unit TEXT NOT NULL,
            renewals INTEGER NOT NULL,
            substitutable INTEGER NOT NULL,
            delivered TEXT NOT NULL DEFAULT '0',
            deliveries INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (identifier, position)
        );
        CREATE TABLE prescription_packages (
            identifier TEXT PRIMARY KEY REFERENCES prescriptions(identifier) ON DELETE CASCADE,
            package BYTEA NOT NULL
        );
        CREATE TABLE dispensations (
            dispensation_id TEXT PRIMARY KEY,
            identifier TEXT NOT NULL REFERENCES prescriptions(identifier) ON DELETE CASCADE,
            document_id TEXT UNIQUE,
            pharmacy TEXT NOT NULL,
            pharmacist TEXT,
            dispensed_at TEXT NOT NULL,
            recorded_at TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            -- SQLite's implicit rowid, which the shared code orders ties by
            rowid BIGINT GENERATED ALWAYS AS IDENTITY
        );
        CREATE INDEX dispensations_prescription ON dispensations(identifier);
        CREATE TABLE dispensed_lines (
            dispensation_id TEXT NOT NULL
                REFERENCES dispensations(dispensation_id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            position INTEGER NOT NULL,
            quantity TEXT NOT NULL,
            label TEXT NOT NULL,
            cis TEXT,
            substituted INTEGER NOT NULL,
            substitution_reason TEXT,
            adjustment_reason TEXT,
            not_delivered_reason TEXT,
            PRIMARY KEY (dispensation_id, seq)
        );
        """,
        """
        ALTER TABLE dispensed_lines ADD COLUMN kind TEXT;
        ALTER TABLE dispensed_lines ADD COLUMN partial_reason TEXT;
        """,
        # Prescriptions another operator registered, kept to dispense them here (issue 20).
        """
        ALTER TABLE prescriptions ADD COLUMN registered_elsewhere INTEGER NOT NULL DEFAULT 0;
        """,
        # The administrators' listing, newest first, one page at a time (find's ORDER BY).
        """
        CREATE INDEX prescriptions_newest ON prescriptions(prescribed_at DESC, identifier);
        """,
    ],
    "dmp": [
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
            replaced_by TEXT,
            has_signature INTEGER NOT NULL DEFAULT 0,
            other_authors TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX dmp_documents_patient ON dmp_documents(patient_ins, status, creation_time);
        CREATE INDEX dmp_documents_prescription ON dmp_documents(prescription_id);
        CREATE TABLE dmp_content (
            unique_id TEXT PRIMARY KEY REFERENCES dmp_documents(unique_id) ON DELETE CASCADE,
            content BYTEA NOT NULL,
            signature BYTEA
        );
        CREATE TABLE dmp_authors (
            unique_id TEXT NOT NULL REFERENCES dmp_documents(unique_id) ON DELETE CASCADE,
            patient_ins TEXT NOT NULL,
            author_key TEXT NOT NULL,
            PRIMARY KEY (unique_id, author_key)
        );
        CREATE INDEX dmp_authors_patient ON dmp_authors(patient_ins, author_key);
        CREATE TABLE dmp_masks (
            unique_id TEXT NOT NULL REFERENCES dmp_documents(unique_id) ON DELETE CASCADE,
            mask_key TEXT NOT NULL,
            PRIMARY KEY (unique_id, mask_key)
        );
        """,
        # Who filed it, apart from who wrote it (XDS: the submission's author vs the document's).
        "ALTER TABLE dmp_documents ADD COLUMN submitter_address TEXT;",
    ],
    "flows": [
        "CREATE TABLE flows_prescribed (key TEXT PRIMARY KEY, identifier TEXT NOT NULL);",
    ],
    "pki": [
        """
        CREATE TABLE pki_certificates (
            serial      TEXT PRIMARY KEY,
            kind        TEXT NOT NULL,
            ca          TEXT NOT NULL,
            subject_dn  TEXT NOT NULL,
            common_name TEXT NOT NULL,
            email       TEXT,
            not_before  TEXT NOT NULL,
            not_after   TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            issued_at   TEXT NOT NULL,
            revoked_at  TEXT,
            reason      TEXT
        );
        CREATE INDEX pki_certificates_email ON pki_certificates(email);
        CREATE TABLE pki_anchors (
            fingerprint TEXT PRIMARY KEY,
            subject_dn  TEXT NOT NULL,
            not_after   TEXT NOT NULL,
            added_at    TEXT NOT NULL
        );
        CREATE TABLE pki_state (name TEXT PRIMARY KEY, value TEXT NOT NULL);
        """,
        # The files issued while the gateway runs, for every node (gateway.pki.store).
        """
        CREATE SEQUENCE pki_files_version;
        CREATE TABLE pki_files (
            path TEXT PRIMARY KEY,              -- under certs/: issued/..., crl/..., anchors/...
            data BYTEA NOT NULL,
            mode INTEGER NOT NULL,
            version BIGINT NOT NULL DEFAULT nextval('pki_files_version')
        );
        CREATE INDEX pki_files_version_idx ON pki_files(version);
        """,
        # The listings page in the database, newest first, and "expiring soon" (pki.store.find,
        # expiring): the twin of the embedded migration 2.
        """
        CREATE INDEX pki_certificates_issued ON pki_certificates(issued_at, serial);
        CREATE INDEX pki_certificates_not_after ON pki_certificates(not_after);
        """,
    ],
    "audit": [
        """
        CREATE TABLE audit_log (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            at TIMESTAMPTZ NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            details JSONB NOT NULL
        );
        CREATE INDEX audit_log_at ON audit_log(at);
        CREATE INDEX audit_log_target ON audit_log(target);
        """,
        # The administrators' queries (AuditLog.query): newest first by actor or action.
        """
        CREATE INDEX audit_log_actor ON audit_log(actor, id);
        CREATE INDEX audit_log_action ON audit_log(action, id);
        """,
    ],
    # Administrator accounts, API tokens, console sessions, login links (gateway/admins): the
    # embedded schema (admins/sqlite.py), TEXT times compared as ISO 8601 text.
    "admins": [
        """
        CREATE TABLE admins_account (
            name TEXT PRIMARY KEY,
            role TEXT NOT NULL,
            active INTEGER NOT NULL DEFAULT 1,
            password_hash TEXT,
            totp_secret TEXT,
            totp_last_step INTEGER NOT NULL DEFAULT -1,
            cert_sha256 TEXT UNIQUE,
            created_at TEXT NOT NULL,
            last_login_at TEXT,
            failures INTEGER NOT NULL DEFAULT 0,
            first_failure_at TEXT,
            locked_until TEXT
        );
        CREATE TABLE admins_token (
            id TEXT PRIMARY KEY,
            secret_sha256 TEXT NOT NULL,
            admin TEXT NOT NULL REFERENCES admins_account(name) ON DELETE CASCADE,
            label TEXT NOT NULL,
            scopes TEXT NOT NULL,
            created_at TEXT NOT NULL,
            created_by TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            revoked_at TEXT,
            last_used_at TEXT
        );
        CREATE TABLE admins_session (
            secret_sha256 TEXT PRIMARY KEY,
            admin TEXT NOT NULL REFERENCES admins_account(name) ON DELETE CASCADE,
            csrf TEXT NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL
        );
        CREATE TABLE admins_login_link (
            secret_sha256 TEXT PRIMARY KEY,
            admin TEXT NOT NULL REFERENCES admins_account(name) ON DELETE CASCADE,
            expires_at TEXT NOT NULL
        );
        """,
    ],
    "mail": [
        """
        -- One row per mailbox that has mail: its folders' UIDVALIDITY floor and its usage.
        CREATE TABLE mail_user (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            address TEXT NOT NULL UNIQUE,
            usage BIGINT NOT NULL DEFAULT 0,
            last_uidvalidity BIGINT NOT NULL DEFAULT 0
        );
        CREATE TABLE mail_folder (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            user_id BIGINT NOT NULL REFERENCES mail_user(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            uidvalidity BIGINT NOT NULL,
            uidnext BIGINT NOT NULL DEFAULT 1,
            highestmodseq BIGINT NOT NULL DEFAULT 1,
            special_use TEXT,
            keywords TEXT NOT NULL DEFAULT '',
            UNIQUE (user_id, name)
        );
        -- Message octets, once per distinct content (a message to 30 patients is stored once).
        -- No reference count: bodies no message names any more are swept after an hour.
        CREATE TABLE mail_body (
            digest BYTEA PRIMARY KEY,           -- SHA-256 of data
            data BYTEA NOT NULL,
            stored_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE TABLE mail_message (
            folder_id BIGINT NOT NULL REFERENCES mail_folder(id) ON DELETE CASCADE,
            uid BIGINT NOT NULL,
            digest BYTEA NOT NULL,
            flags TEXT NOT NULL DEFAULT '',
            modseq BIGINT NOT NULL,
            internaldate BIGINT NOT NULL,
            size INTEGER NOT NULL,
            tz INTEGER NOT NULL DEFAULT 0,
            recent BOOLEAN NOT NULL DEFAULT TRUE,
            envelope BYTEA,
            bodystructure BYTEA,
            PRIMARY KEY (folder_id, uid)
        );
        CREATE INDEX mail_message_modseq ON mail_message(folder_id, modseq);
        CREATE INDEX mail_message_digest ON mail_message(digest);
        CREATE INDEX mail_message_recent ON mail_message(folder_id) WHERE recent;
        CREATE TABLE mail_expunged (
            folder_id BIGINT NOT NULL REFERENCES mail_folder(id) ON DELETE CASCADE,
            uid BIGINT NOT NULL,
            modseq BIGINT NOT NULL,
            PRIMARY KEY (folder_id, uid)
        );
        CREATE INDEX mail_expunged_modseq ON mail_expunged(folder_id, modseq);
        CREATE TABLE mail_subscription (
            user_id BIGINT NOT NULL REFERENCES mail_user(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            PRIMARY KEY (user_id, name)
        );
        CREATE TABLE mail_sortkeys (
            folder_id BIGINT NOT NULL REFERENCES mail_folder(id) ON DELETE CASCADE,
            uid BIGINT NOT NULL,
            sent BIGINT NOT NULL,
            subject TEXT NOT NULL,
            reply INTEGER NOT NULL,
            from_addr TEXT NOT NULL,
            to_addr TEXT NOT NULL,
            cc_addr TEXT NOT NULL,
            display_from TEXT NOT NULL,
            display_to TEXT NOT NULL,
            message_id TEXT NOT NULL,
            refs TEXT NOT NULL,
            PRIMARY KEY (folder_id, uid)
        );
        -- Every change of a folder (new mail, flags, expunge, rename, deletion) is announced
        -- at its commit to every node's listener (gateway.postgresql.mail.Listener).
        CREATE FUNCTION mssgw_mail_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' THEN
                PERFORM pg_notify('mssgw_mail', OLD.id || ' -1');
                RETURN OLD;
            END IF;
            PERFORM pg_notify('mssgw_mail', NEW.id || ' ' || NEW.highestmodseq);
            RETURN NEW;
        END $$;
        CREATE TRIGGER mail_folder_changed AFTER UPDATE OF highestmodseq, name ON mail_folder
            FOR EACH ROW WHEN (OLD.highestmodseq IS DISTINCT FROM NEW.highestmodseq
                               OR OLD.name IS DISTINCT FROM NEW.name)
            EXECUTE FUNCTION mssgw_mail_notify();
        CREATE TRIGGER mail_folder_deleted AFTER DELETE ON mail_folder
            FOR EACH ROW EXECUTE FUNCTION mssgw_mail_notify();
        """,
    ],
    "queue": [
        """
        CREATE TABLE queue_entry (
            id TEXT PRIMARY KEY,                -- gateway.store.queue.new_queue_id
            record JSONB NOT NULL,              -- Record: sender, states per recipient
            digest BYTEA NOT NULL,              -- the message, in mail_body
            next_attempt DOUBLE PRECISION NOT NULL
        );
        CREATE INDEX queue_entry_next ON queue_entry(next_attempt);
        """,
    ],
}

COMPONENTS = tuple(MIGRATIONS)
LOCK = 0x6D737367  # "mssg": the advisory lock `mssgw init` takes while it migrates


def migrate_all(conn: Connection) -> list[str]:
    """Bring every component's schema up to date; one line per component changed."""
    done: list[str] = []
    conn.execute("SELECT pg_advisory_lock(?)", (LOCK,))
    try:
        for component, migrations in MIGRATIONS.items():
            applied = apply_migrations(conn, component, migrations)  # type: ignore[arg-type]
            if applied:
                done.append(f"database schema: {component} at version {len(migrations)}")
    finally:
        conn.execute("SELECT pg_advisory_unlock(?)", (LOCK,))
    conn.checked.clear()
    return done


def require(conn: Connection, component: str) -> None:
    """Refuse to work on a schema `mssgw init` has not brought to this program's version."""
    want = len(MIGRATIONS[component])
    try:
        row = conn.execute(
            "SELECT version FROM schema_version WHERE component = ?", (component,)
        ).fetchone()
    except psycopg.errors.UndefinedTable:  # a database `mssgw init` never touched
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        row = None
    have = row[0] if row else 0
    if have < want:
        raise GatewayError(
            f"storage: the database's {component} schema is at version {have}, this program"
            f" needs {want}: run `mssgw init`"
        )
    if have > want:
        raise GatewayError(
            f"storage: the database's {component} schema is at version {have}, newer than this"
            " program: upgrade it"
        )
