"""What a flow needs, opened once per process (the pool's workers keep their connections)."""

from __future__ import annotations

import datetime as dt
import gc
import multiprocessing
from dataclasses import dataclass
from typing import Any

from gateway.audit import Batched
from gateway.config import Config
from gateway.db import connect
from gateway.directory import Directory, Mailbox, open_directory
from gateway.directory.demo import ROBOT_LOCAL
from gateway.dmp.sqlite import SQLiteDMP
from gateway.documents.people import DirectoryPeople
from gateway.prescriptions.sqlite_registry import SQLiteRegistry

ACTOR = "gateway"


@dataclass
class Context:
    config: Config
    directory: Directory
    registry: SQLiteRegistry
    dmp: SQLiteDMP
    audit: Batched  # the registry's and the DMP's: `with ctx.audit.held()` for one fsync
    people: DirectoryPeople
    reference: Any  # gateway.drugs.store.DrugReference

    @property
    def drugs(self) -> Any:
        """The drug reference, or None while none is imported (codes are then taken as given)."""
        return self.reference if self.reference.is_loaded() else None

    @property
    def robot(self) -> str:
        return f"{ROBOT_LOCAL}@{self.config.gateway.domain}"

    def mailbox(self, address: str) -> Mailbox | None:
        return self.directory.get(address.lower())

    def structure_of(self, mailbox: Mailbox) -> Mailbox | None:
        if mailbox.professional and mailbox.professional.structure:
            return self.mailbox(mailbox.professional.structure)
        return None


_contexts: dict[str, Context] = {}


def context(config: Config) -> Context:
    key = str(config.database_path)
    ctx = _contexts.get(key)
    if ctx is None:
        from gateway.drugs.store import open_reference

        conn = connect(config.database_path)
        audit = Batched(config.audit_log_path)
        directory = open_directory(config, actor=ACTOR)
        ref = open_reference(conn)  # its migrations too (an index added for the forms)
        ctx = Context(
            config=config,
            directory=directory,
            registry=SQLiteRegistry(conn, audit),
            dmp=SQLiteDMP(conn, audit),
            audit=audit,
            people=DirectoryPeople(directory, config.documents.patient_ins_root),
            reference=ref,
        )
        _contexts[key] = ctx
        if multiprocessing.parent_process() is not None:
            # In a pool process (as the server's workers do once serving): the modules,
            # connections and caches loaded so far live as long as the process; frozen, the
            # full collections no longer walk them (~0.15 ms per prescription).
            gc.collect()
            gc.freeze()
    return ctx


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
