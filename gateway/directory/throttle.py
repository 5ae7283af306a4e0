"""The authentication throttle's state: failed logins and the shared half of the credential
cache, behind one small interface so that a lockout holds across every process and every
gateway sharing the store.

`Authenticator` (auth.py) decides (limits, windows, HMAC keys); the throttle only keeps what it
is told and answers counts. The embedded implementation is `SQLiteThrottle` (auth.py, component
"auth" of the gateway's database); a shared database makes the same tables hold across nodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class LoginThrottle(Protocol):
    def recent(self, scope: str, key: str, since: float) -> tuple[int, float | None]:
        """(failures of `key` in `scope` ("account", "client") at or after `since`, time of the
        oldest of them)."""
        ...

    def record(self, entries: Sequence[tuple[str, str]], at: float, keep_since: float) -> None:
        """Add a failure at `at` for each (scope, key) and forget every failure before
        `keep_since` (attackers try many addresses: the table must not grow with them)."""
        ...

    def clear(self, scope: str, key: str) -> None:
        """Forget the failures of `key` in `scope` (a successful login)."""
        ...

    def verified_until(self, key: bytes, hash_digest: bytes, now: float) -> float | None:
        """When the verified-login entry `key` expires, if it exists, is live at `now` and was
        made for the stored hash whose digest is `hash_digest` (a new password voids it)."""
        ...

    def add_verified(self, key: bytes, hash_digest: bytes, expires: float, now: float) -> None:
        """Keep a verified login until `expires` (and drop the entries expired at `now`)."""
        ...

    def close(self) -> None: ...
