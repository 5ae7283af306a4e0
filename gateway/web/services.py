"""The application services of one HTTP request, acting for its authenticated caller.

Storage is opened on first use through the configured backend (`gateway.runtime.storage_for`),
with the caller's audit name, and closed when the request ends (`services()` is a FastAPI
dependency with `yield`). Administrator accounts are the worker's (its composition root's
`admin_accounts`: one store, thread-safe): every request checks a token or a session.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property
from typing import Any

from fastapi import Request

from gateway.admins.accounts import AdminAccounts
from gateway.admins.model import Caller
from gateway.audit import AuditService
from gateway.config import Config
from gateway.directory import Directory
from gateway.directory.admin import MailboxService, TrustService
from gateway.dmp.admin import DmpService
from gateway.flows.records import Records
from gateway.pki.admin import CertificateService
from gateway.prescriptions.admin import PrescriptionService
from gateway.runtime import storage_for
from gateway.status import StatusService
from gateway.store.admin import QueueService


def config_of(request: Request) -> Config:
    context = request.app.state.mssgw
    config: Config = getattr(context, "config", context)
    return config


def accounts_of(request: Request) -> AdminAccounts:
    """The worker's AdminAccounts (its root's, opened on first use, closed with it)."""
    accounts: AdminAccounts = request.app.state.mssgw.runtime.admin_accounts
    return accounts


class Services:
    def __init__(self, config: Config, caller: Caller, accounts: AdminAccounts) -> None:
        self.config = config
        self.caller = caller
        self.accounts = accounts
        self._open: list[Any] = []
        self.storage = storage_for(config)
        self.audit_log = self._keep(self.storage.audit_log())
        self.record = self.audit_log.record

    def _keep(self, storage: Any) -> Any:
        self._open.append(storage)
        return storage

    @cached_property
    def directory(self) -> Directory:
        d: Directory = self._keep(self.storage.directory(self.caller.actor))
        return d

    @cached_property
    def records(self) -> Records:
        r: Records = self._keep(self.storage.records(self.audit_log))
        return r

    @cached_property
    def mailboxes(self) -> MailboxService:
        return MailboxService(self.directory, self.record, self.caller)

    @cached_property
    def trust(self) -> TrustService:
        return TrustService(self.directory, self.caller,
                            max_removed_share=self.config.trust.max_removed_share)

    @cached_property
    def pki(self) -> CertificateService:
        return CertificateService(self.config, self.record, self.caller)

    @cached_property
    def prescriptions(self) -> PrescriptionService:
        return PrescriptionService(self.records.registry, self.caller)

    @cached_property
    def dmp(self) -> DmpService:
        return DmpService(self.records.dmp, self.caller)

    @cached_property
    def queue(self) -> QueueService:
        return QueueService(self.config, self.storage.outbound_queue(), self.record, self.caller,
                            intake=self._keep(self.storage.intake()))

    @cached_property
    def audit(self) -> AuditService:
        return AuditService(self.audit_log, self.caller)

    @cached_property
    def status(self) -> StatusService:
        return StatusService(self.config, self.directory, self.caller, log=self.audit_log,
                             queue=self.storage.outbound_queue())

    def close(self) -> None:
        for storage in reversed(self._open):
            storage.close()
        self._open.clear()


def open_services(request: Request, caller: Caller) -> Iterator[Services]:
    services = Services(config_of(request), caller, accounts_of(request))
    try:
        yield services
    finally:
        services.close()
