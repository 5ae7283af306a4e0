"""The demo's administrator (`mssgw init --demo`): account `demo`, with a random password and a
TOTP secret printed once, like the demo mailboxes' passwords. `make run` then prints a one-time
login link for it (`mssgw admin login-link demo`), so the console opens without an
authenticator app; later logins use the password and a TOTP code."""

from __future__ import annotations

import secrets

from gateway.admins import console_url
from gateway.admins.accounts import ISSUER
from gateway.admins.model import Caller
from gateway.admins.totp import provisioning_uri
from gateway.audit import local_actor
from gateway.runtime import Runtime

DEMO_ADMIN = "demo"


def register(runtime: Runtime) -> list[str]:
    """A DEMO_STEPS entry of `mssgw init --demo` (idempotent)."""
    config = runtime.config
    accounts = runtime.admin_accounts
    if accounts.store.account(DEMO_ADMIN) is not None:
        return []
    password = secrets.token_urlsafe(12)
    _, secret = accounts.add(Caller.local(local_actor()), DEMO_ADMIN, "administrator",
                             password=password)
    assert secret is not None
    url = console_url(config)
    return [
        f"demo administrator of the console{f' ({url})' if url else ''}: {DEMO_ADMIN} / "
        f"password {password} / TOTP secret {secret}",
        f"  authenticator URI: {provisioning_uri(secret, DEMO_ADMIN, ISSUER)}",
    ]
