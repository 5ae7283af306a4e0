"""`mssgw backup DIR` and `mssgw restore DIR`: a copy of a gateway's state that another,
empty installation can be brought back from.

Embedded backend: the SQLite database and every mailbox index through SQLite's online backup
API (a consistent copy while the gateway runs: no stop, no torn page), then the Maildir
files, the queue, the audit log, the certificates and the configuration. Maildir files never
change once delivered (flags live in the index), so copying them after their index is safe; mail
delivered during the copy may or may not be in it.

PostgreSQL backend: `pg_dump --format=custom` of the whole database (one consistent snapshot:
directory, registry, DMP, audit, mail bodies, queue, PKI index), plus the files that stay on a
node (certificates and CA keys, the drug reference, the configuration). `restore` runs
`pg_restore` into the configured database, which must be empty (`createdb` it first), in
one transaction. For a national deployment this is the logical backup beside the physical
ones (base backups and WAL archiving, docs/scaling.md).

A backup holds password hashes, patients' data and the CA keys: it is written 0700/0600, and
belongs on encrypted storage.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import sqlite3
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from gateway.config import Config
from gateway.errors import GatewayError

MANIFEST = "mssgw-backup.json"
INDEX_NAME = "mssgw-index.sqlite"


def _sqlite_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
    target = sqlite3.connect(dst)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()
    dst.chmod(0o600)


def _copy_tree(src: Path, dst: Path, *, indexes: bool = False) -> None:
    """Files of `src` into `dst`; SQLite indexes through the backup API, their WAL files left."""
    if not src.is_dir():
        return
    for root, _dirs, files in os.walk(src):
        here = Path(root)
        target = dst / here.relative_to(src)
        target.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name in files:
            if indexes and name.startswith(INDEX_NAME):
                if name == INDEX_NAME:
                    _sqlite_copy(here / name, target / name)
                continue
            try:
                shutil.copy2(here / name, target / name)
            except FileNotFoundError:
                continue  # expunged or moved meanwhile


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if versions:
        return versions[-1]
    raise GatewayError(f"backup: {name} not found (Debian package postgresql-client)")


def _run(args: list[str]) -> None:
    try:
        subprocess.run(args, check=True, capture_output=True, text=True, timeout=3600)
    except subprocess.CalledProcessError as exc:
        first = (exc.stderr or "").strip().splitlines()
        raise GatewayError(f"{Path(args[0]).name}: {first[-1] if first else exc}") from None


def backup(config: Config, dest: Path) -> list[str]:
    if dest.exists() and any(dest.iterdir()):
        raise GatewayError(f"backup: {dest} is not empty")
    dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    done: list[str] = []
    backend = config.storage.backend
    if backend == "postgresql":
        from gateway.postgresql.connection import conninfo

        out = dest / "database.dump"
        _run([_tool("pg_dump"), "--format=custom", "--no-owner", "--file", str(out),
              "--dbname", conninfo(config)])
        out.chmod(0o600)
        done.append(f"database: {out} (pg_dump)")
    else:
        if config.database_path.exists():
            _sqlite_copy(config.database_path, dest / "gateway.db")
            done.append(f"database: {dest / 'gateway.db'} (SQLite online backup)")
        _copy_tree(config.mailboxes_path, dest / "mailboxes", indexes=True)
        _copy_tree(config.queue_path, dest / "queue")
        if config.audit_log_path.exists():
            shutil.copy2(config.audit_log_path, dest / "audit.log")
        done.append(f"mail, queue and audit log: {dest}")
    if backend == "postgresql" and config.database_path.exists():  # the drug reference
        _sqlite_copy(config.database_path, dest / "gateway.db")
    _copy_tree(config.certs_path, dest / "certs")
    if config.source is not None:
        shutil.copy2(config.source, dest / "config.toml")
    manifest = {"backend": backend, "at": datetime.now(UTC).isoformat(timespec="seconds"),
                "domain": config.gateway.domain}
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    done.append(f"certificates and configuration: {dest}")
    return done


def restore(config: Config, src: Path) -> list[str]:
    try:
        manifest = json.loads((src / MANIFEST).read_text())
    except (OSError, ValueError):
        raise GatewayError(f"restore: {src} holds no mssgw backup ({MANIFEST})") from None
    backend = config.storage.backend
    if manifest.get("backend") != backend:
        raise GatewayError(
            f"restore: the backup is of the {manifest.get('backend')} backend, this"
            f" installation is configured for {backend}"
        )
    done: list[str] = []
    if backend == "postgresql":
        from gateway.postgresql.connection import connect, conninfo

        with connect(config) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
        if row and row[0]:
            raise GatewayError("restore: the configured database is not empty")
        _run([_tool("pg_restore"), "--no-owner", "--exit-on-error", "--single-transaction",
              "--dbname", conninfo(config), str(src / "database.dump")])
        done.append("database restored (pg_restore)")
        if (src / "gateway.db").exists():
            _sqlite_copy(src / "gateway.db", config.database_path)
    else:
        if config.database_path.exists():
            raise GatewayError(f"restore: {config.database_path} exists: restore into an"
                               " empty installation")
        _sqlite_copy(src / "gateway.db", config.database_path)
        _copy_tree(src / "mailboxes", config.mailboxes_path, indexes=True)
        _copy_tree(src / "queue", config.queue_path)
        if (src / "audit.log").exists():
            config.audit_log_path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / "audit.log", config.audit_log_path)
        done.append(f"database, mail, queue and audit log restored from {src}")
    _copy_tree(src / "certs", config.certs_path)
    config.certs_path.chmod(0o700)
    done.append(f"certificates restored into {config.certs_path}")
    return done
