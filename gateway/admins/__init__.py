"""Administrators: their accounts (not mailboxes), roles, second factor, sessions and API tokens.

Who may administer the gateway through its HTTP faces (the REST API and the web console):
accounts created with `mssgw admin add`, each an *administrator* (reads and changes) or a
read-only *auditor*. The console logs them in with a password (scrypt) and a TOTP code
(RFC 6238), or a client certificate of our CA bound to the account; API clients present a token
an administrator created (scoped, expiring, revocable) or such a certificate.

- `model.py`: `Role`, `Caller` (who is asking, and what they may do: every application service
  takes one), the records, the errors (401 and 403 for the HTTP faces).
- `totp.py`: RFC 6238 codes (cryptography's TOTP), provisioning URIs.
- `store.py`: the `AdminStore` interface and its SQLite implementation (component `admins`).
- `accounts.py`: `AdminAccounts`, the rules: add, log in (lockout), sessions, tokens, one-time
  login links.
- `cli.py`: `mssgw admin ...`.
"""
