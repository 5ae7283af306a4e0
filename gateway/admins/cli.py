"""`mssgw admin ...`: administrator accounts of the API and console, and their API tokens.

The first administrator can only be created here, by someone with a shell on the gateway's
machine. Passwords are read from stdin (first line) or prompted for, never taken from argv; the
TOTP secret is printed once, with the otpauth:// URI an authenticator app reads.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from gateway.admins import console_url
from gateway.admins.accounts import ISSUER, AdminAccounts
from gateway.admins.model import SCOPE_CHOICES, Caller, Role
from gateway.admins.totp import provisioning_uri
from gateway.audit import local_actor
from gateway.cli import add_command, command_group, config_of, print_json, runtime_of
from gateway.errors import GatewayError


def _accounts(args: argparse.Namespace) -> AdminAccounts:
    return runtime_of(args).admin_accounts  # closed with the command's root


def _caller() -> Caller:
    return Caller.local(local_actor())


def read_password(prompt: str = "password") -> str:
    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        return line.removesuffix("\n").removesuffix("\r")
    first = getpass.getpass(f"{prompt}: ")
    if first != getpass.getpass("again: "):
        raise GatewayError("password: the two entries differ; nothing changed")
    return first


def _certificate(path: str | None, args: argparse.Namespace) -> x509.Certificate | None:
    if not path:
        return None
    if path.isalnum() and not Path(path).exists():  # a serial of a certificate we issued
        from gateway.pki import ca

        return ca.load_issued(config_of(args), path)[0]
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise GatewayError(f"certificate: cannot read {path}: {exc.strerror}") from None
    try:
        return (x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data
                else x509.load_der_x509_certificate(data))
    except ValueError:
        raise GatewayError(f"certificate: {path} is not a certificate (PEM or DER)") from None


def _print_totp(name: str, secret: str) -> None:
    print(f"TOTP secret (shown once): {secret}")
    print(f"  authenticator URI: {provisioning_uri(secret, name, ISSUER)}")


def cmd_add(args: argparse.Namespace) -> None:
    accounts = _accounts(args)
    cert = _certificate(args.certificate, args)
    password = None if args.no_password else read_password()
    admin, secret = accounts.add(_caller(), args.name, args.role, password=password,
                                 certificate=cert)
    print(f"added {admin.role.value} {admin.name}")
    if secret:
        _print_totp(admin.name, secret)
    if cert is not None:
        print(f"  client certificate bound: sha256 {admin.certificate_sha256}")
    url = console_url(config_of(args))
    if url:
        print(f"console: {url}")


def cmd_list(args: argparse.Namespace) -> None:
    admins = _accounts(args).accounts()
    if args.json:
        print_json([a.as_dict() for a in admins])
        return
    if not admins:
        print("no administrator yet: `mssgw admin add NAME` creates the first one")
    now = datetime.now(UTC)
    for a in admins:
        factors = "+".join(x for x, on in (("password", a.has_password), ("totp", a.has_totp),
                                          ("certificate", bool(a.certificate_sha256))) if on)
        state = "active" if a.active else "disabled"
        if a.locked_until and a.locked_until > now:
            state += f", locked until {a.locked_until:%H:%M} UTC"
        print(f"{a.name:<20} {a.role.value:<13} {factors:<30} {state}")


def cmd_remove(args: argparse.Namespace) -> None:
    _accounts(args).remove(_caller(), args.name)
    print(f"removed administrator {args.name}")


def cmd_set_password(args: argparse.Namespace) -> None:
    accounts = _accounts(args)
    name = accounts.get(args.name).name
    accounts.set_password(_caller(), name, read_password("new password"))
    print(f"password set for {name} (their console sessions are ended)")


def cmd_reset_totp(args: argparse.Namespace) -> None:
    accounts = _accounts(args)
    name = accounts.get(args.name).name
    _print_totp(name, accounts.reset_totp(_caller(), name))


def cmd_unlock(args: argparse.Namespace) -> None:
    _accounts(args).unlock(_caller(), args.name)
    print(f"unlocked {args.name}")


def cmd_enable(args: argparse.Namespace, active: bool = True) -> None:
    _accounts(args).set_active(_caller(), args.name, active)
    print(f"{'enabled' if active else 'disabled'} {args.name}")


def cmd_disable(args: argparse.Namespace) -> None:
    cmd_enable(args, False)


def cmd_certificate(args: argparse.Namespace) -> None:
    cert = None if args.none else _certificate(args.certificate, args)
    if cert is None and not args.none:
        raise GatewayError("certificate: give a certificate file or serial, or --none")
    _accounts(args).bind_certificate(_caller(), args.name, cert)
    print(f"{args.name}: " + ("certificate unbound" if cert is None else "certificate bound"))


def cmd_login_link(args: argparse.Namespace) -> None:
    config = config_of(args)
    secret = _accounts(args).login_link(_caller(), args.name, minutes=args.minutes)
    base = console_url(config) or "https://HOST:PORT/console/"
    minutes = args.minutes or config.admin.login_link_minutes
    print(f"{base}login/link?code={secret}")
    print(f"  (one login as {args.name}, within {minutes} minutes; no second factor asked)")


def cmd_token_create(args: argparse.Namespace) -> None:
    token, secret = _accounts(args).create_token(
        _caller(), args.admin, args.label, args.scope, days=args.days
    )
    if args.json:
        data = token.as_dict(datetime.now(UTC))
        data["token"] = secret
        print_json(data)
        return
    print(f"token {token.id} for {token.admin}, scopes {' '.join(token.scopes)}, "
          f"until {token.expires_at:%Y-%m-%d}")
    print(f"  {secret}")
    print("  (shown once: send it as `Authorization: Bearer TOKEN`)")


def cmd_token_list(args: argparse.Namespace) -> None:
    now = datetime.now(UTC)
    tokens = _accounts(args).tokens(args.admin)
    if args.json:
        print_json([t.as_dict(now) for t in tokens])
        return
    if not tokens:
        print("no API token")
    for t in tokens:
        print(f"{t.id}  {t.admin:<16} {t.state(now):<8} until {t.expires_at:%Y-%m-%d}  "
              f"{' '.join(t.scopes)}  {t.label}")


def cmd_token_revoke(args: argparse.Namespace) -> None:
    token = _accounts(args).revoke_token(_caller(), args.id)
    print(f"revoked token {token.id} of {token.admin}")


def register(sub: Any) -> None:
    group = command_group(sub, "admin", "administrators of the API and web console; API tokens")
    roles = [r.value for r in Role]

    p = add_command(group, "add", "add an administrator (password from stdin or prompted; "
                    "prints the TOTP secret once)", cmd_add)
    p.add_argument("name", help="login name: lower-case letters, digits, . _ -")
    p.add_argument("--role", choices=roles, default=Role.ADMINISTRATOR.value,
                   help="administrator (default) or auditor (read-only)")
    p.add_argument("--certificate", metavar="FILE|SERIAL",
                   help="bind a client certificate (PEM/DER file, or the serial of one we issued)")
    p.add_argument("--no-password", action="store_true",
                   help="certificate login only (needs --certificate)")

    add_command(group, "list", "list administrators", cmd_list, json_output=True)
    for name, handler, text in (
        ("remove", cmd_remove, "remove an administrator (their tokens and sessions go too)"),
        ("set-password", cmd_set_password, "set a new password (stdin or prompted)"),
        ("reset-totp", cmd_reset_totp, "give a new TOTP secret (prints it once)"),
        ("unlock", cmd_unlock, "lift a lockout after failed logins"),
        ("enable", cmd_enable, "let a disabled administrator log in again"),
        ("disable", cmd_disable, "stop an administrator from logging in (sessions end)"),
    ):
        p = add_command(group, name, text, handler)
        p.add_argument("name")

    p = add_command(group, "certificate", "bind (or --none: unbind) a client certificate",
                    cmd_certificate)
    p.add_argument("name")
    p.add_argument("certificate", nargs="?", metavar="FILE|SERIAL")
    p.add_argument("--none", action="store_true")

    p = add_command(group, "login-link", "print a one-time console login link (no second "
                    "factor: for a first login or the demo)", cmd_login_link)
    p.add_argument("name")
    p.add_argument("--minutes", type=int, help="validity (default: [admin] login_link_minutes)")

    tokens = group.add_parser("token", help="API tokens", description="API tokens")
    tsub = tokens.add_subparsers(dest="token_command", metavar="COMMAND", required=True)
    p = add_command(tsub, "create", "create an API token (printed once)", cmd_token_create,
                    json_output=True)
    p.add_argument("--admin", required=True, help="the account the token acts as")
    p.add_argument("--label", required=True, help="what it is for, e.g. 'provisioning script'")
    p.add_argument("--scope", action="append", required=True, metavar="SCOPE",
                   help=f"repeatable: {', '.join(SCOPE_CHOICES)}")
    p.add_argument("--days", type=int, help="validity in days (default: [admin] token_days)")
    p = add_command(tsub, "list", "list API tokens", cmd_token_list, json_output=True)
    p.add_argument("--admin", help="only this account's tokens")
    p = add_command(tsub, "revoke", "revoke an API token at once", cmd_token_revoke)
    p.add_argument("id")
