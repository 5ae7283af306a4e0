"""Administrators: their accounts (not mailboxes), roles, second factor, sessions and API tokens.

Who may administer the gateway through its HTTP faces (the REST API and the web console):
accounts created with `mssgw admin add`, each an *administrator* (reads and changes) or a
read-only *auditor*. The console logs them in with a password (scrypt) and a TOTP code
(RFC 6238), or a client certificate of our CA bound to the account; API clients present a token
an administrator created (scoped, expiring, revocable) or such a certificate.

- `model.py`: `Role`, `Caller` (who is asking, and what they may do: every application service
  takes one), the records, the errors (401 and 403 for the HTTP faces).
- `totp.py`: RFC 6238 codes (cryptography's TOTP), provisioning URIs.
- `store.py`: the `AdminStore` interface (a storage backend makes one: `Storage.admin_store`);
  `sqlite.py`: the embedded implementation (component `admins` of the gateway's database).
- `accounts.py`: `AdminAccounts`, the rules: add, log in (lockout), sessions, tokens, one-time
  login links.
- `cli.py`: `mssgw admin ...`.
"""

from __future__ import annotations

from gateway.admins.accounts import AdminAccounts
from gateway.admins.store import AdminStore
from gateway.audit import AuditLog
from gateway.config import Config


def accounts_over(config: Config, store: AdminStore, audit: AuditLog) -> AdminAccounts:
    """The rules over a store and an audit log (what the composition root builds)."""
    return AdminAccounts(store, audit.record, config.admin,
                         min_password_length=config.auth.min_password_length)


def open_accounts(config: Config) -> AdminAccounts:
    """The administrator accounts of this gateway, through its storage backend, audited to its
    log, on their own (commands, tests); the caller closes them (`close()`). A process's root
    has its own: `Runtime.admin_accounts`."""
    from gateway.runtime.storage import storage_for

    storage = storage_for(config)
    store = storage.admin_store()
    try:
        audit = storage.audit_log()
    except BaseException:
        store.close()
        raise
    return accounts_over(config, store, audit).closing(store.close, audit.close)


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
