"""Password authentication for the SMTP submission and IMAP servers.

    auth = runtime.authenticator                         # once per process, from its root
    result = await auth.authenticate(address, password, client_ip)
    if result.ok: session.mailbox = result.mailbox      # else answer 535 / NO, log result.reason

- scrypt runs in a small pool of threads of its own (`verifier`, which the process's root
  sizes to the worker's share of the cores), never on the event loop: each check allocates
  16 MiB, and with asyncio's default executor (up to cpu+4 threads per worker, one malloc arena
  each) a burst of first logins left ~380 MB in the workers' arenas for good (bench_memory:
  1,000 distinct logins, 818 MB in all before, 436 after). More threads than cores would not
  verify faster anyway. The 16 MiB blocks are also kept out of the arenas
  (`_large_blocks_unmapped`), so that memory goes back to the system after each check.
- A verified address+password is cached for `[auth] cache_ttl` seconds (like Dovecot's auth
  cache), keyed by an HMAC, so the cache never holds a password. The HMAC key lives only in memory:
  `mssgw serve` creates it before it forks its workers and gives it to each worker's root
  (`gateway.runtime`), so every worker and every service (SMTP, IMAP) computes the same keys,
  and the verified logins are shared through the throttle (`LoginThrottle`; embedded: table
  `auth_verified`: HMAC, a digest of the stored hash, expiry). A
  client's next connection usually lands on another worker: without the shared table each
  worker would run scrypt again for it. A copy of the database alone gives nothing to test
  passwords against (the HMAC key is not in it).
  The cache never weakens the rules: every call still reads the mailbox's state and password hash
  (one primary-key lookup) and refuses a suspended mailbox or a changed password at once, and
  lockouts are checked before the cache.
- Failed logins are recorded by the throttle (embedded: the database, component "auth"), so a
  lockout holds across every worker process (and every gateway sharing the store): an account
  is locked after `account_max_failures` failures within `account_window` seconds, a client
  address (an IPv6 client by its /64) after `client_max_failures` within `client_window`. A
  success clears the account's failures.
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
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from gateway.config import AuthSection
from gateway.db import connect, migrate, transaction
from gateway.directory.model import Mailbox, MailboxState
from gateway.directory.passwords import dummy_verify, verify_password
from gateway.directory.repository import Directory
from gateway.directory.throttle import LoginThrottle

COMPONENT = "auth"
MIGRATIONS = [
    """
    CREATE TABLE auth_failure (scope TEXT NOT NULL, key TEXT NOT NULL, at REAL NOT NULL);
    CREATE INDEX auth_failure_key ON auth_failure(scope, key, at);
    """,
    # Expired failures are purged on every new failure (attackers try many addresses).
    "CREATE INDEX auth_failure_at ON auth_failure(at);",
    # Verified logins shared by the worker processes (see VerifiedLogins).
    """
    CREATE TABLE auth_verified (
        key BLOB PRIMARY KEY, hash_digest BLOB NOT NULL, expires REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX auth_verified_expires ON auth_verified(expires);
    """,
]

_verifiers: dict[int, ThreadPoolExecutor] = {}
_verifiers_lock = threading.Lock()


def verifier(threads: int = 1) -> ThreadPoolExecutor:
    """The process's pool of `threads` password-checking threads (shared by SMTP and IMAP)."""
    with _verifiers_lock:
        pool = _verifiers.get(threads)
        if pool is None:
            _large_blocks_unmapped()
            pool = _verifiers[threads] = ThreadPoolExecutor(
                max_workers=threads, thread_name_prefix="mssgw-scrypt")
        return pool


def verifier_threads(workers: int) -> int:
    """A worker's share of the cores (at least one) for `workers` worker processes (0: one per
    core): scrypt is CPU-bound, more threads only hold more 16 MiB buffers at once."""
    cores = os.cpu_count() or 1
    return max(1, -(-cores // (workers or cores)))


def _large_blocks_unmapped() -> None:
    """Have glibc serve blocks of 1 MiB and more with mmap, always. By default its threshold
    rises to the size of the largest block freed (up to 32 MiB), after which every 16 MiB scrypt
    buffer is carved from a thread's arena and stays resident once freed; mapped, it goes back
    to the system at once. Other allocators (musl...) ignore the call or lack it: no harm."""
    import contextlib
    import ctypes

    m_mmap_threshold = -3  # <malloc.h>
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(m_mmap_threshold, 1 << 20)


class AuthReason(StrEnum):
    OK = "ok"
    UNKNOWN = "unknown"  # no such mailbox
    BAD_PASSWORD = "bad-password"  # noqa: S105 - wrong password, or none set yet
    SUSPENDED = "suspended"
    LOCKED_OUT = "locked-out"  # too many failures for this account or client address
    # The right password, but [auth] password_kinds excludes the mailbox's kind: it logs in
    # with a token (gateway.oidc) or a certificate. Told only to who knew the password.
    PASSWORD_NOT_ALLOWED = "password-not-allowed"  # noqa: S105 - a reason, not a secret


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


class SQLiteThrottle:
    """`LoginThrottle` in the gateway's SQLite database (component "auth"): failed logins per
    (scope, key) with their time, and the verified logins every process of the gateway reads.
    Thread-safe (one lock around one connection)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._lock = threading.Lock()
        migrate(conn, COMPONENT, MIGRATIONS)

    @classmethod
    def open(cls, path: Path) -> SQLiteThrottle:
        return cls(connect(path))

    def close(self) -> None:
        self.conn.close()

    def recent(self, scope: str, key: str, since: float) -> tuple[int, float | None]:
        with self._lock:
            row = self.conn.execute(
                "SELECT count(*), min(at) FROM auth_failure"
                " WHERE scope = ? AND key = ? AND at >= ?",
                (scope, key, since),
            ).fetchone()
        return int(row[0]), row[1]

    def record(self, entries: Sequence[tuple[str, str]], at: float, keep_since: float) -> None:
        with self._lock, transaction(self.conn):
            self.conn.execute("DELETE FROM auth_failure WHERE at < ?", (keep_since,))
            for scope, key in entries:
                self.conn.execute(
                    "INSERT INTO auth_failure (scope, key, at) VALUES (?, ?, ?)", (scope, key, at)
                )

    def clear(self, scope: str, key: str) -> None:
        with self._lock, transaction(self.conn):
            self.conn.execute("DELETE FROM auth_failure WHERE scope = ? AND key = ?", (scope, key))

    def verified_until(self, key: bytes, hash_digest: bytes, now: float) -> float | None:
        with self._lock:
            row = self.conn.execute(
                "SELECT expires FROM auth_verified WHERE key = ? AND hash_digest = ?"
                " AND expires > ?",
                (key, hash_digest, now),
            ).fetchone()
        return float(row[0]) if row else None

    def add_verified(self, key: bytes, hash_digest: bytes, expires: float, now: float) -> None:
        # Expired entries go at each insert (one per scrypt run): the table holds the logins of
        # the last cache_ttl seconds, and only of people who knew their password.
        with self._lock, transaction(self.conn):
            self.conn.execute("DELETE FROM auth_verified WHERE expires <= ?", (now,))
            self.conn.execute(
                "INSERT OR REPLACE INTO auth_verified (key, hash_digest, expires)"
                " VALUES (?, ?, ?)",
                (key, hash_digest, expires),
            )


FailureLog = SQLiteThrottle  # its former name


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


def _digest(password_hash: str) -> bytes:
    return hashlib.sha256(password_hash.encode("utf-8")).digest()


@dataclass
class _CacheEntry:
    password_hash: str
    expires: float


class Authenticator:
    """Checks address + password for the servers. One per process; safe to share by threads."""

    def __init__(
        self,
        directory: Directory,
        failures: LoginThrottle,
        settings: AuthSection | None = None,
        *,
        clock: Callable[[], float] = time.time,
        executor: Executor | None = None,
        secret: bytes | None = None,
    ) -> None:
        self.directory = directory
        self.failures = failures
        self.settings = settings or AuthSection()
        self.clock = clock
        self.executor = executor
        self._cache: OrderedDict[bytes, _CacheEntry] = OrderedDict()
        self._cache_lock = threading.Lock()
        # The HMAC key of the credential cache: random, in memory only. `mssgw serve` makes one
        # in the supervisor and gives it to every worker's root, so that they compute the same
        # keys and share the throttle's verified logins; an authenticator without one makes its
        # own (its entries are then its own).
        self._cache_key = secret if secret is not None else os.urandom(32)

    # --- the two entry points ----------------------------------------------------------------

    async def authenticate(self, address: str, password: str, client_ip: str | None) -> AuthResult:
        """Check a login without blocking the event loop (scrypt runs in the executor; by
        default the process's verifier pool)."""
        early = self._before_verify(address, password, client_ip)
        if isinstance(early, AuthResult):
            return early
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.executor or verifier(), self._verify, address, password, client_ip, early
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

    def _lockout(self, address: str | None, client_ip: str | None) -> float | None:
        """Seconds until the lockout of this account or client ends, or None when not locked."""
        s, now = self.settings, self.clock()
        waits: list[float] = []
        for scope, key, limit, window in (
            ("account", address, s.account_max_failures, s.account_window),
            ("client", client_key(client_ip), s.client_max_failures, s.client_window),
        ):
            if limit <= 0 or key is None:
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
            now = self.clock()
            with self._cache_lock:
                entry = self._cache.get(key)
            # The stored hash must be the one verified: a new password invalidates the entry.
            if not (entry and entry.expires > now and entry.password_hash == cred.password_hash):
                expires = self.failures.verified_until(key, _digest(cred.password_hash), now)
                entry = None
                if expires is not None:  # verified by another process
                    entry = _CacheEntry(cred.password_hash, expires)
                    self._remember(key, entry)
            if entry is not None:
                mailbox = self.directory.get(addr)
                if mailbox is not None and mailbox.active and self._password_allowed(mailbox):
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
        if not self._password_allowed(mailbox):
            return AuthResult(AuthReason.PASSWORD_NOT_ALLOWED, addr)
        if self.failures.recent("account", addr, 0.0)[0]:  # a write only when there is one
            self.failures.clear("account", addr)
        if self.settings.cache_ttl > 0:
            key, now = self._key(addr, password), self.clock()
            entry = _CacheEntry(stored, now + self.settings.cache_ttl)
            self._remember(key, entry)
            self.failures.add_verified(key, _digest(stored), entry.expires, now)
        return AuthResult(AuthReason.OK, addr, mailbox)

    def _password_allowed(self, mailbox: Mailbox) -> bool:
        return mailbox.kind.value in self.settings.password_kinds

    def _remember(self, key: bytes, entry: _CacheEntry) -> None:
        with self._cache_lock:
            self._cache[key] = entry
            while len(self._cache) > max(self.settings.cache_size, 1):
                self._cache.popitem(last=False)

    def _fail(self, address: str | None, client_ip: str | None) -> None:
        s, now = self.settings, self.clock()
        entries = [("client", client_key(client_ip))]
        if address is not None:
            entries.insert(0, ("account", address))
        self.failures.record(
            entries, now, keep_since=now - max(s.account_window, s.client_window)
        )

    # --- the same lockouts for the other ways to log in (tokens: gateway.oidc.login) --------

    def lockout(self, account: str | None, client_ip: str | None) -> float | None:
        """Seconds until the lockout of `account` (None: not known yet) or of the client
        address ends; None when neither is locked out."""
        return self._lockout(account.strip().lower() if account else None, client_ip)

    def failed(self, account: str | None, client_ip: str | None) -> None:
        """Count a refused login against the account (when known) and the client address."""
        self._fail(account.strip().lower() if account else None, client_ip)

    def succeeded(self, account: str) -> None:
        """A login succeeded: the account's failures are forgotten."""
        addr = account.strip().lower()
        if self.failures.recent("account", addr, 0.0)[0]:  # a write only when there is one
            self.failures.clear("account", addr)
