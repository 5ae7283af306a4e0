"""Password authentication for the SMTP submission and IMAP servers.

    auth = Authenticator.from_config(config)            # once per worker process
    result = await auth.authenticate(address, password, client_ip)
    if result.ok: session.mailbox = result.mailbox      # else answer 535 / NO, log result.reason

- scrypt runs in an executor, never on the event loop.
- A verified address+password is cached for `[auth] cache_ttl` seconds (like Dovecot's auth
  cache), keyed by an HMAC with a per-process random key, so the cache never holds a password.
  The cache never weakens the rules: every call still reads the mailbox's state and password hash
  (one primary-key lookup) and refuses a suspended mailbox or a changed password at once, and
  lockouts are checked before the cache.
- Failed logins are recorded in the database (component "auth"), so a lockout holds across every
  worker process: an account is locked after `account_max_failures` failures within
  `account_window` seconds, a client address (an IPv6 client by its /64) after
  `client_max_failures` within `client_window`. A success clears the account's failures.
- Unknown addresses cost as much time as known ones (a dummy scrypt), so timing does not reveal
  which mailboxes exist. Servers should answer every failure the same way; `reason` is for logs.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from enum import StrEnum

from gateway.config import AuthSection, Config
from gateway.db import connect, migrate, transaction
from gateway.directory.model import Mailbox, MailboxState
from gateway.directory.passwords import dummy_verify, verify_password
from gateway.directory.repository import Directory

COMPONENT = "auth"
MIGRATIONS = [
    """
    CREATE TABLE auth_failure (scope TEXT NOT NULL, key TEXT NOT NULL, at REAL NOT NULL);
    CREATE INDEX auth_failure_key ON auth_failure(scope, key, at);
    """,
    # Expired failures are purged on every new failure (attackers try many addresses).
    "CREATE INDEX auth_failure_at ON auth_failure(at);",
]


class AuthReason(StrEnum):
    OK = "ok"
    UNKNOWN = "unknown"  # no such mailbox
    BAD_PASSWORD = "bad-password"  # noqa: S105 - wrong password, or none set yet
    SUSPENDED = "suspended"
    LOCKED_OUT = "locked-out"  # too many failures for this account or client address


@dataclass(frozen=True)
class AuthResult:
    reason: AuthReason
    address: str
    mailbox: Mailbox | None = None
    cached: bool = False  # answered from the credential cache (no scrypt)
    retry_after: float | None = None  # seconds until a lockout ends

    @property
    def ok(self) -> bool:
        return self.reason is AuthReason.OK


class FailureLog:
    """Failed logins per (scope, key) with their time, shared by every process via SQLite."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._lock = threading.Lock()
        migrate(conn, COMPONENT, MIGRATIONS)

    def recent(self, scope: str, key: str, since: float) -> tuple[int, float | None]:
        """(failures since `since`, time of the oldest of them)."""
        with self._lock:
            row = self.conn.execute(
                "SELECT count(*), min(at) FROM auth_failure"
                " WHERE scope = ? AND key = ? AND at >= ?",
                (scope, key, since),
            ).fetchone()
        return int(row[0]), row[1]

    def record(self, entries: list[tuple[str, str]], at: float, keep_since: float) -> None:
        with self._lock, transaction(self.conn):
            self.conn.execute("DELETE FROM auth_failure WHERE at < ?", (keep_since,))
            for scope, key in entries:
                self.conn.execute(
                    "INSERT INTO auth_failure (scope, key, at) VALUES (?, ?, ?)", (scope, key, at)
                )

    def clear(self, scope: str, key: str) -> None:
        with self._lock, transaction(self.conn):
            self.conn.execute("DELETE FROM auth_failure WHERE scope = ? AND key = ?", (scope, key))


def client_key(client_ip: str | None) -> str:
    """The key a client address is counted under: the address, or its /64 for IPv6."""
    if not client_ip:
        return "unknown"
    try:
        ip = ipaddress.ip_address(client_ip.split("%")[0])
    except ValueError:
        return client_ip
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


@dataclass
class _CacheEntry:
    password_hash: str
    expires: float


class Authenticator:
    """Checks address + password for the servers. One per process; safe to share by threads."""

    def __init__(
        self,
        directory: Directory,
        failures: FailureLog,
        settings: AuthSection | None = None,
        *,
        clock: Callable[[], float] = time.time,
        executor: Executor | None = None,
    ) -> None:
        self.directory = directory
        self.failures = failures
        self.settings = settings or AuthSection()
        self.clock = clock
        self.executor = executor
        self._cache: OrderedDict[bytes, _CacheEntry] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._cache_key = os.urandom(32)

    @classmethod
    def from_config(cls, config: Config, directory: Directory | None = None) -> Authenticator:
        from gateway.directory import open_directory

        return cls(
            directory or open_directory(config),
            FailureLog(connect(config.database_path)),
            config.auth,
        )

    # --- the two entry points ----------------------------------------------------------------

    async def authenticate(self, address: str, password: str, client_ip: str | None) -> AuthResult:
        """Check a login without blocking the event loop (scrypt runs in the executor)."""
        early = self._before_verify(address, password, client_ip)
        if isinstance(early, AuthResult):
            return early
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.executor, self._verify, address, password, client_ip, early
        )

    def authenticate_sync(self, address: str, password: str, client_ip: str | None) -> AuthResult:
        """The same check for code running in a thread (blocks for the scrypt time)."""
        early = self._before_verify(address, password, client_ip)
        if isinstance(early, AuthResult):
            return early
        return self._verify(address, password, client_ip, early)

    # --- steps ---------------------------------------------------------------------------------

    def _key(self, address: str, password: str) -> bytes:
        msg = address.encode("utf-8") + b"\0" + password.encode("utf-8")
        return hmac.new(self._cache_key, msg, hashlib.sha256).digest()

    def _lockout(self, address: str, client_ip: str | None) -> float | None:
        """Seconds until the lockout of this account or client ends, or None when not locked."""
        s, now = self.settings, self.clock()
        waits: list[float] = []
        for scope, key, limit, window in (
            ("account", address, s.account_max_failures, s.account_window),
            ("client", client_key(client_ip), s.client_max_failures, s.client_window),
        ):
            if limit <= 0:
                continue
            count, oldest = self.failures.recent(scope, key, now - window)
            if count >= limit and oldest is not None:
                waits.append(max(oldest + window - now, 0.0))
        return max(waits) if waits else None

    def _before_verify(
        self, address: str, password: str, client_ip: str | None
    ) -> AuthResult | str | None:
        """The cheap checks. Returns a final result, or what the slow path must check: the
        stored hash, "" when the mailbox has no password yet, None when it does not exist."""
        addr = address.strip().lower()
        wait = self._lockout(addr, client_ip)
        if wait is not None:
            return AuthResult(AuthReason.LOCKED_OUT, addr, retry_after=wait)
        cred = self.directory.credentials(addr)
        if cred is None:
            return None
        if cred.state is not MailboxState.ACTIVE:
            return AuthResult(AuthReason.SUSPENDED, addr)
        if cred.password_hash is None:
            return ""
        if self.settings.cache_ttl > 0:
            key = self._key(addr, password)
            with self._cache_lock:
                entry = self._cache.get(key)
            # The stored hash must be the one verified: a new password invalidates the entry.
            if entry and entry.expires > self.clock() and entry.password_hash == cred.password_hash:
                mailbox = self.directory.get(addr)
                if mailbox is not None and mailbox.active:
                    return AuthResult(AuthReason.OK, addr, mailbox, cached=True)
        return cred.password_hash

    def _verify(
        self, address: str, password: str, client_ip: str | None, stored: str | None
    ) -> AuthResult:
        addr = address.strip().lower()
        if not stored:  # unknown, or no password yet: take the time a real check takes
            dummy_verify(password)
            self._fail(addr, client_ip)
            reason = AuthReason.UNKNOWN if stored is None else AuthReason.BAD_PASSWORD
            return AuthResult(reason, addr)
        if not verify_password(password, stored):
            self._fail(addr, client_ip)
            return AuthResult(AuthReason.BAD_PASSWORD, addr)
        mailbox = self.directory.get(addr)
        if mailbox is None:  # deleted while we were hashing
            return AuthResult(AuthReason.UNKNOWN, addr)
        if not mailbox.active:
            return AuthResult(AuthReason.SUSPENDED, addr)
        if self.failures.recent("account", addr, 0.0)[0]:  # a write only when there is one
            self.failures.clear("account", addr)
        s = self.settings
        if s.cache_ttl > 0:
            with self._cache_lock:
                self._cache[self._key(addr, password)] = _CacheEntry(
                    stored, self.clock() + s.cache_ttl
                )
                while len(self._cache) > max(s.cache_size, 1):
                    self._cache.popitem(last=False)
        return AuthResult(AuthReason.OK, addr, mailbox)

    def _fail(self, address: str, client_ip: str | None) -> None:
        s, now = self.settings, self.clock()
        self.failures.record(
            [("account", address), ("client", client_key(client_ip))],
            now,
            keep_since=now - max(s.account_window, s.client_window),
        )
