"""The HTTPS listener of one worker process: `start(config, reuse_port=...)` for `mssgw serve`.

Served by Hypercorn inside the worker's own event loop, beside the SMTP and IMAP listeners:
- the worker binds the socket itself ([http] listen, SO_REUSEPORT like the mail listeners, so
  the kernel spreads connections over the workers) and starts listening before it reports
  ready, so no connection is refused while Hypercorn starts;
- TLS is the gateway's own: `gateway.pki.tls.server_context` (the [tls] profile, the server
  certificate), made once before the workers fork so they share session-ticket keys;
- Hypercorn is told both through its documented embedding API, `hypercorn.asyncio.serve(app,
  config, shutdown_trigger=...)`, with a `Config` subclass whose `create_sockets` and
  `create_ssl_context` return ours (the methods `serve` calls to get them). With a shutdown
  trigger Hypercorn installs no signal handler: the worker keeps its own.

Why Hypercorn and not uvicorn: uvicorn's `Server.serve()` replaces the process's SIGINT/SIGTERM
handlers for as long as it serves (`capture_signals`), which would take the worker's stop signal
from the mail listeners; embedding it without that means calling its undocumented
`startup`/`main_loop`/`shutdown` steps, and its `Config` builds its SSL context from file names
and reconfigures logging process-wide. Hypercorn's `serve` is made for a loop someone else runs.
What uvicorn is faster at (httptools parsing) does not matter on an administration port.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets

from gateway import handshakes
from gateway.config import Config, parse_hostport
from gateway.http import tls_extension
from gateway.http.app import Extension, WebContext, create_app
from gateway.runtime import Runtime

log = logging.getLogger("mssgw.http")

BACKLOG = 128
ALPN = ["h2", "http/1.1"]


def make_tls_context(config: Config) -> ssl.SSLContext:
    from gateway.pki.tls import server_context

    # A client certificate is asked for, never required: the administration API and console
    # accept one bound to an administrator (gateway/web/auth.py); browsers, scrapers and
    # token clients send none. OpenSSL checks a presented one (our CAs, their CRLs); what it
    # accepted reaches the application as the ASGI TLS extension (tls_extension.py).
    ctx = server_context(config, client_certs="optional")
    ctx.set_alpn_protocols(ALPN)
    return tls_extension.record_peers(handshakes.name_listener(ctx, "https"))


def tls_context(runtime: Runtime) -> ssl.SSLContext:
    """The root's HTTPS context, made once (by the supervisor before it forks: `prepare`)."""
    return runtime.made("https tls", lambda: make_tls_context(runtime.config))


def prepare(runtime: Runtime) -> None:
    """Before the workers fork: one TLS context for all (shared session-ticket key)."""
    if runtime.config.http.listen:
        tls_context(runtime)


class _Hypercorn(HypercornConfig):
    """Hypercorn's configuration, serving our socket with our TLS context."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, graceful: float) -> None:
        super().__init__()
        self._mssgw_socket = sock
        self._mssgw_context = context
        self.accesslog = None  # no line per probe or scrape
        self.errorlog = logging.getLogger("mssgw.http")
        self.include_server_header = False  # no product and version for scanners
        self.graceful_timeout = graceful
        self.alpn_protocols = ALPN
        self.backlog = BACKLOG

    @property
    def ssl_enabled(self) -> bool:
        return True

    def create_ssl_context(self) -> ssl.SSLContext:
        return self._mssgw_context

    def create_sockets(self) -> Sockets:
        return Sockets(secure_sockets=[self._mssgw_socket], insecure_sockets=[], quic_sockets=[])


class HTTPListener:
    """What `gateway.server` asks of a listener: its sockets, its name, and `close()` (stop
    taking connections; requests in progress get [http] graceful_timeout seconds)."""

    mssgw_name = "https"

    def __init__(self, sock: socket.socket, task: asyncio.Task[None], stop: asyncio.Event,
                 app: Any) -> None:
        self._socket = sock
        self.task = task
        self._stop = stop
        self.app = app

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return (self._socket,)

    def close(self) -> None:
        self._stop.set()


def bind(address: str, *, reuse_port: bool) -> socket.socket:
    host, port = parse_hostport(address)
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(sockaddr)
        sock.listen(BACKLOG)  # connections wait in the backlog until Hypercorn accepts
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _finished(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the HTTPS listener stopped: %s", task.exception())


async def start(
    runtime: Runtime, *, reuse_port: bool = False, extensions: list[Extension] | None = None
) -> list[HTTPListener]:
    """Serve the application on [http] listen until the returned listener is closed; returns
    once it accepts connections. An empty [http] listen starts nothing."""
    config = runtime.config
    if not config.http.listen:
        return []
    context = tls_context(runtime)
    app = create_app(WebContext(runtime), extensions)
    sock = bind(config.http.listen, reuse_port=reuse_port)
    stop = asyncio.Event()
    task = asyncio.create_task(
        serve(tls_extension.exposing(app),  # type: ignore[arg-type]
              _Hypercorn(sock, context, config.http.graceful_timeout),
              shutdown_trigger=stop.wait),
        name="mssgw https",
    )
    started = asyncio.create_task(app.state.started.wait())
    await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        started.cancel()
        sock.close()
        task.result()  # raises what stopped it
        raise RuntimeError("the HTTPS listener stopped while starting")
    task.add_done_callback(_finished)
    sockname = sock.getsockname()
    log.debug("https listening on %s:%s", sockname[0], sockname[1])
    return [HTTPListener(sock, task, stop, app)]
