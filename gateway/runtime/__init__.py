"""The composition root: one `Runtime` per process, built in one place from the configuration.

    runtime = Runtime(config)                  # nothing opened yet
    runtime.directory.get("dr.martin@...")     # the directory, opened on first use
    ...
    runtime.close()                            # closes what it opened, last opened first

The root asks the storage backend (`storage.py`; the embedded default in `embedded.py`) for each
store the first time a part of the process needs it, and hands the stores, typed by their
interfaces, to the parts that use them: the SMTP gateway (`smtp`), the IMAP service
(`mail_stores`, `authenticator`, `audit`), the pipeline and its steps (`pipeline`), the flows
in the pipeline's pool processes (`flows`), the CLI commands (`gateway.cli.runtime_of`). Nothing
else opens storage or keeps the configuration in a module global.

Who builds roots:
- `mssgw serve`: the supervisor builds one and makes what the workers share before it forks
  (the authentication cache's secret, the TLS contexts: `made`); each worker continues with
  `in_child()`, which keeps those and opens its own storage.
- each process of a worker's pipeline pool builds its own from the pickled configuration, once
  (`flow_context`), for the flows it runs;
- each `mssgw` command builds one (`gateway.cli.runtime_of`), actor = the local OS user.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.audit import AuditLog
from gateway.config import Config
from gateway.directory.repository import Directory
from gateway.directory.throttle import LoginThrottle
from gateway.dmp.repository import DocumentRepository
from gateway.flows.records import Records
from gateway.pki.store import CertificateIndex
from gateway.prescriptions.registry import PrescriptionRegistry
from gateway.runtime.storage import Storage, storage_for
from gateway.smtp.conversations import ConversationLog
from gateway.store.interfaces import Intake, MailStores, OutboundQueue

if TYPE_CHECKING:
    from gateway.admins.accounts import AdminAccounts
    from gateway.directory.auth import Authenticator
    from gateway.flows.context import Context
    from gateway.imap.state import Hooks
    from gateway.oidc.login import TokenLogins
    from gateway.pipeline import Pipeline
    from gateway.smtp.gateway import Gateway

_T = TypeVar("_T")


class Runtime:
    """Everything one process of the gateway uses, made once, closed once.

    `actor` is who the directory's changes are audited under ("gateway" for the servers and
    flows, the local user for a command). Each store is made on first use in the process that
    built the root (a root is never shared across a fork or by another process: see
    `in_child`)."""

    def __init__(
        self,
        config: Config,
        *,
        actor: str = "gateway",
        storage: Storage | None = None,
        auth_secret: bytes | None = None,
        made: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.actor = actor
        self.storage: Storage = storage if storage is not None else storage_for(config)
        # The credential cache's HMAC key: in memory only; the same in every worker of one
        # `mssgw serve` (made by the supervisor), so they share verified logins.
        self.auth_secret = auth_secret if auth_secret is not None else os.urandom(32)
        self._made: dict[str, Any] = dict(made or {})
        self._closers: list[Callable[[], None]] = []
        self._pid = os.getpid()
        self.closed = False

    def in_child(self) -> Runtime:
        """The root of a worker forked from the process holding this one: the same
        configuration, secret and prepared objects (`made`), its own storage."""
        return Runtime(self.config, actor=self.actor, auth_secret=self.auth_secret,
                       made=self._made)

    def made(self, name: str, make: Callable[[], _T]) -> _T:
        """`make()` once per root, under `name`; inherited by `in_child`. For what workers
        should share when made before the fork: a TLS context (hence its session-ticket key,
        so a client's TLS session resumes on any worker)."""
        if name not in self._made:
            self._made[name] = make()
        value: _T = self._made[name]
        return value

    def _open(self, make: Callable[[], _T], *, closing: bool = True) -> _T:
        """`make()` in this process, closed with the root when `closing`."""
        if os.getpid() != self._pid:
            raise RuntimeError(
                "a Runtime opens storage only in the process that built it (see in_child)"
            )
        if self.closed:
            raise RuntimeError("this Runtime is closed")
        value = make()
        if closing:
            self._closers.append(value.close)  # type: ignore[attr-defined]
        return value

    # --- stores, each behind its interface -------------------------------------------------

    @cached_property
    def directory(self) -> Directory:
        return self._open(lambda: self.storage.directory(self.actor))

    @cached_property
    def audit(self) -> AuditLog:
        return self._open(self.storage.audit_log)

    @cached_property
    def throttle(self) -> LoginThrottle:
        return self._open(self.storage.login_throttle)

    @cached_property
    def conversations(self) -> ConversationLog:
        return self._open(self.storage.conversations)

    @cached_property
    def records(self) -> Records:
        audit = self.audit
        return self._open(lambda: self.storage.records(audit))

    @property
    def registry(self) -> PrescriptionRegistry:
        return self.records.registry

    @property
    def dmp(self) -> DocumentRepository:
        return self.records.dmp

    @cached_property
    def mail_stores(self) -> MailStores:
        return self._open(self.storage.mail_stores)

    @cached_property
    def outbound_queue(self) -> OutboundQueue:
        return self._open(self.storage.outbound_queue, closing=False)

    @cached_property
    def intake(self) -> Intake:
        # The patients' conversations are recorded with the commit of their message.
        notes = self.conversations.record_many
        return self._open(lambda: self.storage.intake(notes=notes))

    @cached_property
    def drugs(self) -> Any:
        return self._open(self.storage.drug_reference)

    @cached_property
    def certificates(self) -> CertificateIndex:
        return self._open(self.storage.certificate_index)

    # --- services, built from the stores ----------------------------------------------------

    @cached_property
    def admin_accounts(self) -> AdminAccounts:
        """The administrators' accounts, sessions and tokens (the HTTPS listener's API and
        console ask on every request), audited to the root's log."""
        from gateway.admins import accounts_over

        store = self._open(self.storage.admin_store)
        return accounts_over(self.config, store, self.audit)

    @cached_property
    def authenticator(self) -> Authenticator:
        from gateway.directory.auth import Authenticator, verifier, verifier_threads

        directory, throttle = self.directory, self.throttle
        # scrypt in a pool sized to the worker's share of the cores (memory: see auth.py)
        pool = verifier(verifier_threads(self.config.gateway.workers))
        return self._open(lambda: Authenticator(directory, throttle, self.config.auth,
                                                secret=self.auth_secret, executor=pool),
                          closing=False)

    @cached_property
    def token_logins(self) -> TokenLogins | None:
        """SASL OAUTHBEARER/XOAUTH2 logins (None without an [oidc] issuer), shared by the SMTP
        and IMAP sessions of the process; lockouts as for passwords (the authenticator's)."""
        from gateway.oidc import token_logins

        directory, authenticator = self.directory, self.authenticator
        return self._open(lambda: token_logins(self.config, directory, authenticator),
                          closing=False)

    @cached_property
    def pipeline(self) -> Pipeline:
        from gateway.flows.steps import STEPS
        from gateway.pipeline import Pipeline

        return self._open(lambda: Pipeline(self.config, STEPS,
                                           context=(flow_context, (self.config,))))

    @cached_property
    def smtp(self) -> Gateway:
        """What the SMTP sessions and the queue runner of this process share."""
        from gateway.smtp.gateway import Gateway

        return self._open(lambda: Gateway(self))

    @cached_property
    def imap_hooks(self) -> Hooks:
        """What the IMAP sessions of this process are given."""
        from gateway.imap.service import build_hooks

        return self._open(lambda: build_hooks(self), closing=False)

    @cached_property
    def flows(self) -> Context:
        """What the flows use (in a pipeline pool process)."""
        from gateway.documents.people import DirectoryPeople
        from gateway.flows.context import Context

        directory = self.directory
        return Context(
            config=self.config,
            directory=directory,
            records=self.records,
            audit=self.audit,
            people=DirectoryPeople(directory, self.config.documents.patient_ins_root),
            reference=self.drugs,
            certificates=self.certificates,
            close=self.close,
        )

    def close(self) -> None:
        """Close what this root opened, last opened first (the SMTP gateway's group commit
        before the stores it writes to)."""
        if self.closed or os.getpid() != self._pid:
            return
        self.closed = True
        closers, self._closers = self._closers, []
        for close in reversed(closers):
            close()


def flow_context(config: Config) -> Context:
    """In a pipeline pool process: the process's root, built once from the pickled
    configuration, and its flow context (closed with the root when the pool process ends)."""
    ctx = Runtime(config).flows  # opens what the flows use, now
    # The modules, connections and caches loaded so far live as long as the process: frozen,
    # the full collections no longer walk them (~0.15 ms per prescription), as the workers do.
    gc.collect()
    gc.freeze()
    return ctx


__all__ = ["Runtime", "Storage", "flow_context", "storage_for"]
