"""Password hashing with scrypt (hashlib, OpenSSL): memory-hard, no extra dependency.

The stored string describes itself, so the cost can be raised later without breaking old hashes:
`$scrypt$ln=14,r=8,p=1$<salt, base64>$<key, base64>` (the layout passlib uses). Verification
refuses parameters outside sane bounds: a tampered hash must not make us allocate gigabytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re

from gateway.errors import GatewayError
from gateway.texts import t

DEFAULT_LOG_N = 14  # N = 16384: about 16 MB and some tens of ms per check on one core
DEFAULT_R = 8
DEFAULT_P = 1
KEY_LEN = 32
SALT_LEN = 16
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024

_FORMAT = re.compile(
    r"\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)"
)


class WeakPassword(GatewayError):
    """The new password breaks the length rule."""


def check_new_password(password: str, min_length: int = MIN_PASSWORD_LENGTH) -> None:
    if len(password) < min_length:
        raise WeakPassword(t("password: too short: at least {n} characters are required",
                             n=min_length))
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(t("password: too long: at most {n} characters",
                             n=MAX_PASSWORD_LENGTH))
    if password != password.strip() or "\n" in password or "\r" in password:
        raise WeakPassword("password: must not start or end with spaces or contain line breaks")


def _scrypt(password: str, salt: bytes, log_n: int, r: int, p: int) -> bytes:
    n = 1 << log_n
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=KEY_LEN,
        maxmem=256 * n * r + (1 << 20),
    )


def hash_password(
    password: str, *, log_n: int = DEFAULT_LOG_N, r: int = DEFAULT_R, p: int = DEFAULT_P
) -> str:
    """The encoded scrypt hash of `password` with a fresh random salt (CPU-heavy: ~tens of ms)."""
    salt = os.urandom(SALT_LEN)
    key = _scrypt(password, salt, log_n, r, p)
    b64 = base64.b64encode
    return f"$scrypt$ln={log_n},r={r},p={p}${b64(salt).decode()}${b64(key).decode()}"


def verify_password(password: str, encoded: str | None) -> bool:
    """True when `password` matches `encoded` (constant-time compare). CPU-heavy like hashing."""
    if not encoded or len(password) > MAX_PASSWORD_LENGTH:
        return False
    m = _FORMAT.fullmatch(encoded)
    if not m:
        return False
    log_n, r, p = int(m[1]), int(m[2]), int(m[3])
    if not (10 <= log_n <= 20 and 1 <= r <= 32 and 1 <= p <= 16):
        return False
    salt, expected = base64.b64decode(m[4]), base64.b64decode(m[5])
    return hmac.compare_digest(_scrypt(password, salt, log_n, r, p), expected)


# A hash of nothing anybody knows, checked when the address is unknown so that the answer takes
# as long as for a real mailbox (no account enumeration by timing).
_DUMMY = hash_password("unknown-mailbox-dummy-password", log_n=DEFAULT_LOG_N)


def dummy_verify(password: str) -> None:
    verify_password(password, _DUMMY)
