"""The client certificate of an HTTPS connection, given to the application in the ASGI scope.

The administration API and console accept a TLS client certificate bound to an administrator
(gateway/web/auth.py). The ASGI way to hand the application what the TLS handshake learnt is
the TLS extension (https://asgi.readthedocs.io/en/latest/specs/tls.html):
`scope["extensions"]["tls"]["client_cert_chain"]`, PEM strings, the client's certificate first.
Hypercorn (0.18, the locked version) does not fill it yet (pgjones/hypercorn#62), and has no
per-connection hook, so the listener does it with two documented mechanisms:

1. `SSLContext.sslobject_class` (the documented way to give a context's connections an
   `ssl.SSLObject` subclass): when a handshake succeeds,
   `PeerRecordingSSLObject.do_handshake` stores what the connection presented (the DER
   certificate OpenSSL verified, or None) in a context variable;
2. `contextvars`: asyncio completes the handshake and starts the connection's protocol in the
   same callback (a `mssgw serve` worker's loop starts it from the task that ran the
   handshake, after calling `connection_ready` there: gateway.server.loop), so the task that
   serves the connection (`asyncio.start_server`'s callback, Hypercorn's) and every task
   it starts (one per HTTP/1.1 request or HTTP/2 stream) are
   created with that value in their context (a task copies the context it is created in).
   `exposing(app)` then puts it in each request's scope.

Each connection's callbacks run in a context of their own (asyncio copies one per handle), and
every successful handshake sets the variable (None without a certificate), so a request never
sees another connection's certificate. Should asyncio one day start the protocol elsewhere,
requests would see no certificate at all: client-certificate logins would fail (401), never
pass wrongly; tests/test_admin_client_cert.py would say so. Drop this module when Hypercorn
fills the extension itself.

What a request sees is a credential only after `gateway.web.auth` checked it again (chain,
purpose, revocation at that moment: a resumed TLS session skips the handshake's checks).
"""

from __future__ import annotations

import contextvars
import ssl
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
                   Awaitable[None]]
_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}  # the spec's integers


@dataclass(frozen=True)
class PeerTLS:
    """What one connection's handshake settled."""

    certificate_der: bytes | None
    version: str | None

    @cached_property  # once per connection, whatever its number of requests
    def extension(self) -> dict[str, Any]:
        """The ASGI TLS extension's keys (those Python's ssl module can tell: no server
        certificate, no cipher-suite number; a certificate that fails verification never
        reaches here, OpenSSL ends the handshake)."""
        chain: list[str] = []
        name = None
        if self.certificate_der:
            cert = x509.load_der_x509_certificate(self.certificate_der)
            chain = [cert.public_bytes(Encoding.PEM).decode("ascii")]
            name = cert.subject.rfc4514_string()
        return {
            "server_cert": None,
            "client_cert_chain": chain,
            "client_cert_name": name,
            "client_cert_error": None,
            "tls_version": _TLS_VERSIONS.get(self.version or ""),
            "cipher_suite": None,
        }


_connection: contextvars.ContextVar[PeerTLS | None] = contextvars.ContextVar(
    "mssgw_https_peer", default=None
)


class PeerRecordingSSLObject(ssl.SSLObject):
    """Records, when its handshake succeeds, what the connection presented."""

    def do_handshake(self) -> None:
        super().do_handshake()  # SSLWantRead/Write (more bytes needed) and errors pass through
        self.connection_ready()

    def connection_ready(self) -> None:
        """Record the peer in the current context. The worker's event loop
        (gateway.server.loop), which runs implicit-TLS handshakes itself and then starts the
        connection's protocol from a task of its own, calls it again there."""
        _connection.set(PeerTLS(self.getpeercert(binary_form=True), self.version()))


def record_peers(context: ssl.SSLContext) -> ssl.SSLContext:
    """Make `context`'s connections record their peer (on top of the class it already gives
    them, e.g. the metrics' failure counting)."""
    base = context.sslobject_class or ssl.SSLObject
    if not issubclass(base, PeerRecordingSSLObject):
        context.sslobject_class = type(f"PeerRecording{base.__name__}",
                                       (PeerRecordingSSLObject, base), {})
    return context


def exposing(app: ASGIApp) -> ASGIApp:
    """`app`, with each HTTP request's scope given its connection's TLS extension."""

    async def with_tls(scope: Scope, receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        peer = _connection.get()
        if peer is not None and scope.get("type") in ("http", "websocket"):
            extensions = dict(scope.get("extensions") or {})
            extensions["tls"] = dict(peer.extension)
            scope = {**scope, "extensions": extensions}
        await app(scope, receive, send)

    return with_tls
