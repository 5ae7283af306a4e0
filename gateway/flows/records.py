"""What the flows keep, behind interfaces: the prescription registry, the DMP and the flows'
own idempotence keys, changed together in one unit of work.

    with ctx.records.unit() as uow:          # one commit: all of it or none of it
        uow.registry.register(...)
        file_package(uow.dmp, ...)
        uow.prescribed.add(key, identifier)

Outside a unit, `records.registry` and `records.dmp` read and change one thing at a time (each
call its own commit). A unit's audit entries are held and written together before its commit
(`AuditLog.held`): the log records attempts as well as outcomes. The embedded implementation is
`gateway.flows.sqlite.SQLiteRecords` (one SQLite connection shared by the registry and the DMP);
a PostgreSQL one opens one transaction on one connection the same way.
"""

from __future__ import annotations

from types import TracebackType
from typing import Protocol

from gateway.dmp.repository import DocumentRepository
from gateway.errors import Conflict
from gateway.prescriptions.registry import PrescriptionRegistry


class AlreadyPrescribed(Conflict):
    """`PrescribedKeys.add` of a key already there: another process registered the same
    message meanwhile; the unit of work rolls back and the client's retry finds the first."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"prescription: message {key[:16]}... was already registered")


class PrescribedKeys(Protocol):
    """Which message already became which prescription: sha256(sender, Message-ID, patient) ->
    identifier, so a client retrying after a 451 gets the same ordonnance, not a second one."""

    def identifier_for(self, key: str) -> str | None: ...

    def add(self, key: str, identifier: str) -> None:
        """Remember `key`; inside a unit of work, committed with the registration. A key
        already there (another process registered the same message meanwhile) raises
        `AlreadyPrescribed`, so that unit rolls back and the client's retry finds the first
        one."""
        ...


class UnitOfWork(Protocol):
    """One transaction over the registry, the DMP and the idempotence keys. As a context
    manager it begins on entry, commits on a normal exit and rolls back when an exception
    leaves the block; `commit()` / `rollback()` end it earlier."""

    @property
    def registry(self) -> PrescriptionRegistry: ...

    @property
    def dmp(self) -> DocumentRepository: ...

    @property
    def prescribed(self) -> PrescribedKeys: ...

    def __enter__(self) -> UnitOfWork: ...

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...


class Records(Protocol):
    """The flows' store: the repositories for single calls, and units of work."""

    @property
    def registry(self) -> PrescriptionRegistry: ...

    @property
    def dmp(self) -> DocumentRepository: ...

    @property
    def prescribed(self) -> PrescribedKeys: ...

    def unit(self) -> UnitOfWork:
        """A new unit of work (not begun until entered)."""
        ...

    def close(self) -> None: ...
