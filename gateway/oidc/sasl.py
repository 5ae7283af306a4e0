"""The SASL messages of token logins, sans I/O: parse what the client sends, build what the
server answers. SMTP (gateway.smtp.handler) and IMAP (gateway.imap.auth) carry them in base64.

OAUTHBEARER (RFC 7628 3.1), the client's first message:

    gs2-header kvsep *(key "=" value kvsep) kvsep
    e.g. b"n,a=dr.martin@example.fr,\\x01host=mx.example.fr\\x01port=587\\x01"
         b"auth=Bearer eyJ...\\x01\\x01"

where gs2-header is "n," or "y," (channel binding "p=" is not supported: refused), then the
optional authorisation identity "a=<mailbox>" with "," and "=" escaped as "=2C" and "=3D".

XOAUTH2 (Google's mechanism, which Thunderbird, Outlook and most libraries also speak):

    b"user=" mailbox b"\\x01auth=Bearer " token b"\\x01\\x01"

On a refusal the server sends one challenge carrying a JSON error (`error_challenge`); the client
answers it with a lone kvsep (OAUTHBEARER, RFC 7628 3.2.3) or an empty response (XOAUTH2), and the
server then ends the exchange with its failure reply.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum

KVSEP = b"\x01"
# RFC 6750 2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_KEY = re.compile(rb"[A-Za-z]+")
MAX_TOKEN = 16 * 1024  # larger than any access token a provider issues; bounded work


class Mechanism(StrEnum):
    OAUTHBEARER = "OAUTHBEARER"
    XOAUTH2 = "XOAUTH2"


class SaslError(ValueError):
    """The client's message does not follow the mechanism's syntax (a protocol error: SMTP
    501, IMAP BAD), as opposed to a token that is refused."""


@dataclass(frozen=True)
class BearerResponse:
    """What a client presented: the token, and the mailbox it asks for ("" when it lets the
    token decide, which OAUTHBEARER allows)."""

    mechanism: Mechanism
    token: str
    authzid: str = ""
    host: str = ""
    port: str = ""

    def __repr__(self) -> str:  # never show the token, in a log or a traceback
        return f"BearerResponse({self.mechanism}, authzid={self.authzid!r})"


def parse(mechanism: Mechanism, message: bytes) -> BearerResponse:
    if mechanism is Mechanism.OAUTHBEARER:
        return parse_oauthbearer(message)
    return parse_xoauth2(message)


def parse_oauthbearer(message: bytes) -> BearerResponse:
    if message == KVSEP:
        raise SaslError("a lone kvsep answers an error challenge, it does not start a login")
    header, sep, rest = message.partition(KVSEP)
    if not sep:
        raise SaslError("no kvsep (\\x01) after the GS2 header")
    authzid = _gs2_authzid(header)
    pairs = _kvpairs(rest)
    auth = pairs.get("auth")
    if auth is None:
        raise SaslError("no auth=Bearer <token> field")
    return BearerResponse(
        Mechanism.OAUTHBEARER, _bearer(auth), authzid, pairs.get("host", ""),
        pairs.get("port", ""),
    )


def parse_xoauth2(message: bytes) -> BearerResponse:
    pairs = _kvpairs(message)
    user, auth = pairs.get("user"), pairs.get("auth")
    if user is None or auth is None:
        raise SaslError("XOAUTH2 expects user=<mailbox>\\x01auth=Bearer <token>\\x01\\x01")
    return BearerResponse(Mechanism.XOAUTH2, _bearer(auth), _mailbox_name(user.strip()))


def _gs2_authzid(header: bytes) -> str:
    try:
        text = header.decode("utf-8")
    except UnicodeDecodeError:
        raise SaslError("the GS2 header is not UTF-8") from None
    parts = text.split(",")
    if len(parts) != 3 or parts[2] != "":
        raise SaslError("the GS2 header must be 'n,' or 'y,' then an optional 'a=<mailbox>,'")
    flag, authz = parts[0], parts[1]
    if flag.startswith("p="):
        raise SaslError("channel binding is not supported (use 'n,' or 'y,')")
    if flag not in ("n", "y"):
        raise SaslError(f"unknown GS2 channel-binding flag {flag[:10]!r}")
    if not authz:
        return ""
    if not authz.startswith("a="):
        raise SaslError("the authorisation identity must be written 'a=<mailbox>'")
    name = authz[2:]
    # RFC 5801 saslname: "=" only in the escapes =2C (",") and =3D ("=").
    if re.search(r"=(?!2C|3D)", name):
        raise SaslError("invalid escape in the authorisation identity")
    return _mailbox_name(name.replace("=2C", ",").replace("=3D", "="))


def _mailbox_name(name: str) -> str:
    if not name:
        raise SaslError("empty mailbox name")
    if len(name) > 320 or not name.isprintable():
        raise SaslError("the mailbox name is not a printable address")
    return name


def _kvpairs(data: bytes) -> dict[str, str]:
    """key=value pairs each ended by kvsep, then a final kvsep."""
    if not data.endswith(KVSEP + KVSEP) and data != KVSEP:
        raise SaslError("the message must end with two kvsep (\\x01\\x01)")
    pairs: dict[str, str] = {}
    for item in data[:-2].split(KVSEP) if data != KVSEP else []:
        key, eq, value = item.partition(b"=")
        if not eq or not _KEY.fullmatch(key):
            raise SaslError("each field must be key=value with a key of letters")
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            raise SaslError("a field value is not UTF-8") from None
        name = key.decode("ascii").lower()
        if name in pairs:
            raise SaslError(f"field {name} given twice")
        pairs[name] = text
    return pairs


def _bearer(auth: str) -> str:
    scheme, _, token = auth.partition(" ")
    token = token.strip(" ")
    if scheme.lower() != "bearer" or not token:
        raise SaslError("the auth field must be 'Bearer <token>'")
    if len(token) > MAX_TOKEN:
        raise SaslError(f"the token is longer than {MAX_TOKEN} characters")
    if not _B64TOKEN.fullmatch(token):
        raise SaslError("the token has characters a bearer token cannot have")
    return token


# The RFC 6750 error codes as the HTTP statuses XOAUTH2 clients expect.
_XOAUTH2_STATUS = {"invalid_token": "401", "insufficient_scope": "403", "invalid_request": "400"}


def error_challenge(
    mechanism: Mechanism, status: str, scope: str, discovery_url: str
) -> bytes:
    """The JSON a server sends (as a challenge) before failing a token login, so the client
    knows to get a new token and from where (RFC 7628 3.2.2; XOAUTH2: Google's format)."""
    doc: dict[str, str]
    if mechanism is Mechanism.OAUTHBEARER:
        doc = {"status": status, "scope": scope, "openid-configuration": discovery_url}
    else:
        doc = {"status": _XOAUTH2_STATUS.get(status, "400"), "schemes": "bearer", "scope": scope}
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")
