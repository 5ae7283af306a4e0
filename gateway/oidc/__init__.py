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


def token_logins(config: Config, directory: Directory, throttle: Throttle) -> TokenLogins | None:
    """Token logins over a Provider of their own, or None when `[oidc]` has no issuer. A
    process makes them once, in its root (`gateway.runtime.Runtime.token_logins`): the SMTP and
    IMAP sessions of a worker share the provider's cached documents and keys."""
    if not config.oidc.enabled:
        return None
    provider = Provider.from_config(config)
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
    "token_logins",
]
