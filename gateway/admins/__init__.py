"""Administrators: their accounts (not mailboxes), roles, second factor, sessions and API tokens.

Who may administer the gateway through its HTTP faces (the REST API and the web console):
accounts created with `mssgw admin add`, each an *administrator* (reads and changes) or a
read-only *auditor*. The console logs them in with a password (scrypt) and a TOTP code
(RFC 6238), or a client certificate of our CA bound to the account; API clients present a token
an administrator created (scoped, expiring, revocable) or such a certificate.

- `model.py`: `Role`, `Caller` (who is asking, and what they may do: every application service
  takes one), the records, the errors (401 and 403 for the HTTP faces).
- `totp.py`: RFC 6238 codes (cryptography's TOTP), provisioning URIs.
- `store.py`: the `AdminStore` interface and its implementation over the gateway's database
  (component `admins`; the same class on PostgreSQL, `gateway.postgresql.storage`).
- `accounts.py`: `AdminAccounts`, the rules: add, log in (lockout), sessions, tokens, one-time
  login links.
- `cli.py`: `mssgw admin ...`.
"""

from __future__ import annotations

from gateway.admins.accounts import AdminAccounts
from gateway.config import Config


def open_accounts(config: Config) -> AdminAccounts:
    """The administrator accounts of this gateway, in the configured storage backend (the
    embedded SQLite database, or the database every node shares), audited to the backend's
    audit log. The caller closes it (`AdminAccounts.close`)."""
    from gateway.runtime import storage_for

    storage = storage_for(config)
    log = storage.audit_log()
    return AdminAccounts(
        storage.admin_store(), log.record, config.admin,
        min_password_length=config.auth.min_password_length, closing=[log.close],
    )


def console_url(config: Config) -> str | None:
    """Where the console answers, from the HTTPS listener's configured address (None when the
    gateway has no HTTP listener)."""
    http = getattr(config, "http", None)
    address = getattr(http, "listen", None) or getattr(http, "address", None)
    if not address:
        return None
    host, _, port = str(address).rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 (reading the configuration, not binding)
        host = "127.0.0.1"
    shown = f"[{host}]" if ":" in host else host
    return f"https://{shown}:{port}/console/"
