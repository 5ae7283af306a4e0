"""`mssgw oidc check` and `mssgw oidc token`: try the [oidc] set-up before users do.

    mssgw oidc check                       # discovery document, keys, introspection endpoint
    mssgw oidc token [--mailbox ADDRESS] < token.txt
                                           # would this token open that mailbox? and why not

Neither logs anyone in nor counts a failure for the lockouts; the token is read from standard
input (never from the command line, where `ps` and the shell history would keep it).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from gateway.cli import add_command, command_group, config_of, print_json
from gateway.errors import ConfigError, GatewayError
from gateway.oidc.login import TokenLogins
from gateway.oidc.provider import Provider
from gateway.oidc.sasl import BearerResponse, Mechanism
from gateway.oidc.validator import TokenValidator


class _NoLockouts:
    """A throttle that locks nothing and counts nothing: these commands are diagnostics."""

    def lockout(self, account: str | None, client_ip: str | None) -> float | None:
        return None

    def failed(self, account: str | None, client_ip: str | None) -> None:
        return None

    def succeeded(self, account: str) -> None:
        return None


def _provider(args: argparse.Namespace) -> tuple[Any, Provider]:
    config = config_of(args)
    if not config.oidc.enabled:
        raise ConfigError(
            f"config: [oidc] issuer is empty in {config.source}: token logins are off"
        )
    return config, Provider.from_config(config)


def cmd_check(args: argparse.Namespace) -> int:
    config, provider = _provider(args)
    s = config.oidc

    async def check() -> dict[str, Any]:
        keys = {}
        for alg in s.algorithms:
            found = await provider.signing_keys(None, alg)
            keys[alg] = sorted({str(k.kid or "(no kid)") for k in found})
        meta = provider.metadata
        return {
            "issuer": s.issuer,
            "discovery": provider.discovery_url,
            "jwks_uri": meta.get("jwks_uri"),
            "keys_by_algorithm": keys,
            "introspection_endpoint": meta.get("introspection_endpoint"),
            "audience": s.audience,
            "identifier_claim": s.identifier_claim,
        }

    try:
        report = asyncio.run(check())
    finally:
        provider.close()
    if not provider.has_keys:
        raise GatewayError(f"cannot read the provider's keys: {provider.last_error}")
    if args.json:
        print_json(report)
    else:
        for name, value in report.items():
            print(f"{name}: {value}")
    if not any(report["keys_by_algorithm"].values()):
        print("no key of the provider fits [oidc] algorithms: every token would be refused",
              file=sys.stderr)
        return 1
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    config, provider = _provider(args)
    token = sys.stdin.read().strip()
    if not token:
        raise GatewayError("no token on standard input")
    from gateway.directory import open_directory

    logins = TokenLogins(config.oidc, TokenValidator(config.oidc, provider),
                         open_directory(config, actor="oidc-check"), _NoLockouts())
    response = BearerResponse(Mechanism.OAUTHBEARER, token, args.mailbox or "")
    try:
        result = asyncio.run(logins.login(response, "", "cli"))
    finally:
        provider.close()
    if result.ok:
        assert result.mailbox is not None
        print(f"ok: this token opens {result.mailbox.address} ({result.mailbox.kind})")
        return 0
    print(f"refused: {result.reason or 'temporary failure'}: {result.message}", file=sys.stderr)
    return 1


def register(sub: Any) -> None:
    group = command_group(sub, "oidc", "token logins ([oidc]): check the provider and tokens")
    add_command(group, "check", "read the provider's discovery document and keys",
                cmd_check, json_output=True)
    p = add_command(group, "token",
                    "check a token read on standard input (no login, no lockout)", cmd_token)
    p.add_argument("--mailbox", metavar="ADDRESS",
                   help="the mailbox to open (default: the professional's own)")
