"""The worker's event loop, and the process's open-file limit.

`WorkerLoop` is asyncio's selector loop with two changes that every listener of the worker
gets (SMTP, IMAP, HTTPS: Hypercorn too, which makes its server with `asyncio.start_server`):

- **TLS handshakes are the gateway's.** asyncio says nothing when the handshake of an
  implicit-TLS connection fails: the SSL error is an OSError, which its transports report only
  in debug mode, and the loop's exception handler never sees it. So `create_server(...,
  ssl=context)` here listens in plain TCP and upgrades each connection itself with
  `loop.start_tls(..., server_side=True)` (the documented call STARTTLS uses), as anyio's TLS
  listener does: a failure arrives as the exception of that call, with the connection's peer
  and port in hand, and becomes one line and one count (`gateway.handshakes.failed`). The
  listener's protocol then gets `connection_made(tls_transport)` exactly as with asyncio's own
  implicit TLS. What the successful path pays for it (one task per handshake) is measured in
  docs/architecture.md ("TLS handshake failures").
- **Running out of file descriptors is one line.** When accept() fails with EMFILE/ENFILE
  (or ENOBUFS/ENOMEM), asyncio stops accepting on that socket for one second and tells the
  loop's exception handler, whose default logs a traceback per attempt. Here: one line per
  listener at most every `ACCEPT_LOG_INTERVAL` seconds, saying how many failed accepts it stands
  for; the retry timers asyncio leaves behind a listener closed meanwhile fail quietly.

`raise_open_files_limit()` lifts the soft RLIMIT_NOFILE to the hard limit (the supervisor
calls it before it forks, so the workers inherit it): a shell's usual soft limit, 1,024, is
about 1,000 connections per process counting everything else the process holds open.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

from gateway import handshakes

log = logging.getLogger("mssgw.server")

ACCEPT_LOG_INTERVAL = 10.0
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class WorkerLoop(asyncio.SelectorEventLoop):
    """The event loop of a `mssgw serve` worker (see the module's docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._accept_paused: dict[str, tuple[float, int]] = {}  # port -> (last line, paused since)
        self.set_exception_handler(_exception_handler)

    async def create_server(  # type: ignore[override]
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: Any = None,
        port: Any = None,
        *,
        ssl: ssl.SSLContext | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
        **kwargs: Any,
    ) -> asyncio.Server:
        if ssl is None:
            return await super().create_server(protocol_factory, host, port, **kwargs)
        context, timeout, shutdown = ssl, ssl_handshake_timeout, ssl_shutdown_timeout

        def accept() -> asyncio.BaseProtocol:
            return _TLSAcceptor(self, protocol_factory(), context, timeout, shutdown)

        return await super().create_server(accept, host, port, **kwargs)


class _Gate(asyncio.Protocol):
    """The TLS transport's protocol between the end of the handshake and the moment the
    listener's protocol is given the transport (the task doing the handshake resumes one loop
    turn later): what arrives meanwhile is held and handed on in order."""

    def __init__(self) -> None:
        self.held: list[tuple[str, Any]] = []

    def data_received(self, data: bytes) -> None:
        self.held.append(("data", data))

    def eof_received(self) -> bool | None:
        self.held.append(("eof", None))
        return None  # over TLS the connection closes after EOF whatever the protocol says

    def connection_lost(self, exc: Exception | None) -> None:
        self.held.append(("lost", exc))


class _TLSAcceptor(asyncio.Protocol):
    """The first protocol of a connection to a TLS listener: runs the handshake, then gives
    the listener's protocol (made at accept, as asyncio makes it) the TLS transport."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        app: asyncio.BaseProtocol,
        context: ssl.SSLContext,
        timeout: float | None,
        shutdown: float | None,
    ) -> None:
        self.loop = loop
        self.app = app
        self.context = context
        self.timeout = timeout
        self.shutdown = shutdown
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()  # start_tls reads from here on
        self.task = self.loop.create_task(self._handshake(transport))

    def connection_lost(self, exc: Exception | None) -> None:
        pass  # before start_tls took the transport: _handshake sees it closing

    async def _handshake(self, transport: asyncio.Transport) -> None:
        if transport.is_closing():
            return
        gate = _Gate()
        try:
            tls = await self.loop.start_tls(
                transport, gate, self.context, server_side=True,
                ssl_handshake_timeout=self.timeout, ssl_shutdown_timeout=self.shutdown,
            )
        except (OSError, EOFError) as exc:  # SSLError, reset, closed, timed out
            handshakes.failed(self.context, transport.get_extra_info("peername"),
                              transport.get_extra_info("sockname"), exc)
            transport.abort()
            return
        except asyncio.CancelledError:
            transport.abort()
            raise
        if tls is None:  # lost in the same loop turn as the handshake ended: nothing to serve
            return
        app = self.app
        # asyncio starts the protocol in the callback that completed the handshake; here it
        # starts in this task. An SSLObject subclass that keeps per-connection state in a
        # context variable (gateway.http.tls_extension) sets it again in this context.
        ready = getattr(tls.get_extra_info("ssl_object"), "connection_ready", None)
        if ready is not None:
            ready()
        tls.set_protocol(app)
        app.connection_made(tls)
        for what, value in gate.held:
            if what == "data":
                app.data_received(value)  # type: ignore[attr-defined]
            elif what == "eof":
                app.eof_received()  # type: ignore[attr-defined]
            else:
                app.connection_lost(value)


def _exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    exc = context.get("exception")
    sock = context.get("socket")
    if isinstance(exc, OSError) and exc.errno in _OUT_OF_RESOURCES and sock is not None:
        _accept_failed(loop, sock, exc)
        return
    if isinstance(exc, ValueError) and _resumes_a_closed_listener(context):
        return  # the listener closed (the worker stops) while its accept() was paused
    loop.default_exception_handler(context)


def _resumes_a_closed_listener(context: dict[str, Any]) -> bool:
    """asyncio's timer that resumes accepting after EMFILE (`_start_serving`, one per failed
    accept) still fires once its listener is closed, and fails on the closed socket
    ("Invalid file descriptor: -1"): nothing is lost, there is nothing left to resume. The
    handle names its callback only in a private attribute; read-only, and when asyncio
    changes it the default handler reports as before."""
    callback = getattr(context.get("handle"), "_callback", None)
    return getattr(callback, "__name__", "") == "_start_serving"


def _accept_failed(loop: asyncio.AbstractEventLoop, sock: socket.socket, exc: OSError) -> None:
    """accept() failed for want of resources; asyncio pauses this listener for a second."""
    try:
        where = handshakes.port(sock.getsockname())
    except OSError:
        where = "?"
    paused: dict[str, tuple[float, int]] = getattr(loop, "_accept_paused", {})
    now = time.monotonic()
    last, count = paused.get(where, (0.0, 0))
    count += 1
    if now - last < ACCEPT_LOG_INTERVAL:
        paused[where] = (last, count)
        return
    paused[where] = (now, 0)
    name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    log.warning(
        "cannot accept connections port=%s reason=%s (%s): new connections wait 1 s%s",
        where, name, exc.strerror,
        f"; {count} failed accepts in the last {ACCEPT_LOG_INTERVAL:.0f} s" if count > 1 else "",
    )


def raise_open_files_limit() -> tuple[int, int]:
    """Lift the soft RLIMIT_NOFILE to the hard one; (before, after). Logged when it changes."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft == resource.RLIM_INFINITY:
        want = hard if soft != resource.RLIM_INFINITY else soft
    else:
        want = hard
    if want != soft and want != resource.RLIM_INFINITY:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, want, exc)
            return soft, soft
        log.info("open-file limit raised from %d to %d (the hard limit)", soft, want)
        return soft, want
    return soft, soft
