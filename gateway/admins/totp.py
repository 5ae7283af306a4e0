"""TOTP second factor (RFC 6238: HMAC-SHA1, 6 digits, 30 s), through cryptography's TOTP.

A code is accepted for the current step and one step either side (clock drift, typing time),
and never twice: the caller stores the last accepted step and passes it back.
"""

from __future__ import annotations

import base64
import os
import time
from urllib.parse import quote, urlencode

from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor import InvalidToken
from cryptography.hazmat.primitives.twofactor.totp import TOTP

DIGITS = 6
STEP = 30
DRIFT = 1  # steps accepted either side of now


def new_secret() -> str:
    """160 random bits (RFC 4226's recommended length), base32 as authenticator apps take it."""
    return base64.b32encode(os.urandom(20)).decode("ascii").rstrip("=")


def _key(secret: str) -> bytes:
    padded = secret.upper() + "=" * (-len(secret) % 8)
    return base64.b32decode(padded)


def _totp(secret: str) -> TOTP:
    return TOTP(_key(secret), DIGITS, SHA1(), STEP, enforce_key_length=False)  # noqa: S303


def code(secret: str, at: float | None = None) -> str:
    """The code shown by an authenticator at `at` (now by default)."""
    return _totp(secret).generate(int(time.time() if at is None else at)).decode("ascii")


def verify(secret: str, candidate: str, *, last_step: int = -1, at: float | None = None) -> int:
    """The step `candidate` is valid for (> last_step), or -1. Spaces in the code are ignored."""
    candidate = "".join(candidate.split())
    if len(candidate) != DIGITS or not candidate.isdigit():
        return -1
    now = int(time.time() if at is None else at)
    totp = _totp(secret)
    for delta in range(-DRIFT, DRIFT + 1):
        step = now // STEP + delta
        if step <= last_step:
            continue
        try:
            totp.verify(candidate.encode("ascii"), step * STEP)
        except InvalidToken:
            continue
        return step
    return -1


def provisioning_uri(secret: str, account: str, issuer: str) -> str:
    """otpauth://totp/... for authenticator apps (Key Uri Format)."""
    label = quote(f"{issuer}:{account}")
    query = urlencode({"secret": secret, "issuer": issuer, "digits": DIGITS, "period": STEP})
    return f"otpauth://totp/{label}?{query}"
