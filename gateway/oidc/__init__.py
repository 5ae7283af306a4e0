"""Token logins: SASL OAUTHBEARER (RFC 7628) and XOAUTH2 with an OpenID provider's access tokens
(Pro Santé Connect for the MSSanté trust space), for SMTP submission and IMAP.

- `sasl`: the mechanisms' messages, sans I/O (parse the client's, build the error challenge).
- `provider`: the provider's discovery document, keys (cached, rotation followed) and
  introspection, fetched off the event loop.
- `validator`: is a token ours, signed, current? (joserfc does the cryptography.)
- `login`: token -> mailbox (the identifier claim, the directory's structure membership,
  suspension, lockouts), with the answer and log line of each refusal.

`[oidc]` in config.toml turns it on (gateway.config.OIDCSection); without an issuer the
mechanisms are not offered.
"""

from __future__ import annotations

from gateway.config import Config
from gateway.directory.repository import Directory
from gateway.oidc.login import Throttle, TokenLogin, TokenLogins
from gateway.oidc.provider import Provider, ProviderError
from gateway.oidc.sasl import BearerResponse, Mechanism, SaslError
from gateway.oidc.validator import Refusal, TokenClaims, TokenRefused, TokenValidator

_providers: dict[str, Provider] = {}


def shared_provider(config: Config) -> Provider:
    """One Provider per process and configuration: SMTP and IMAP sessions of a worker share
    its cached documents and keys."""
    key = f"{config.home}\0{config.oidc!r}"
    provider = _providers.get(key)
    if provider is None:
        provider = _providers[key] = Provider.from_config(config)
    return provider


def token_logins(config: Config, directory: Directory, throttle: Throttle) -> TokenLogins | None:
    """The token logins of this process, or None when `[oidc]` has no issuer."""
    if not config.oidc.enabled:
        return None
    provider = shared_provider(config)
    return TokenLogins(config.oidc, TokenValidator(config.oidc, provider), directory, throttle)


__all__ = [
    "BearerResponse",
    "Mechanism",
    "Provider",
    "ProviderError",
    "Refusal",
    "SaslError",
    "Throttle",
    "TokenClaims",
    "TokenLogin",
    "TokenLogins",
    "TokenRefused",
    "TokenValidator",
    "shared_provider",
    "token_logins",
]
