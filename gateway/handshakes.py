"""Failed TLS handshakes: one log line and one count each, on every listener.

    ctx = handshakes.name_listener(server_context(config), "imap")   # once, where it is made
    handshakes.failed(ctx, peer, sockname, error)                     # where a handshake failed

Every listener reports its failures through `failed`: the implicit-TLS ones (SMTP
submission-tls, IMAP tls, HTTPS) from the worker's event loop, which runs their handshakes
itself (`gateway.server.loop`), the STARTTLS ones from their protocol code (SMTP
`GatewaySMTP.handle_exception`, IMAP `Connection._starttls`). The line is

    TLS handshake failed peer=203.0.113.9:41234 port=993 reason=WRONG_VERSION_NUMBER

(`reason`: OpenSSL's reason code, or `handshake-timeout`, `connection-closed`,
`connection-reset`), never a traceback: a TLS scan makes hundreds of them, and anyone can cause
them. The same call counts `mssgw_tls_handshake_failures_total{listener=...}` (gateway.metrics),
so the log and the metric always agree. The listener's name travels with its SSL context
(`name_listener`), since the places that see a failure hold the context, not the listener.
"""

from __future__ import annotations

import logging
import ssl

from gateway import metrics

log = logging.getLogger("mssgw.tls")

_ATTRIBUTE = "mssgw_listener"


def name_listener(context: ssl.SSLContext, listener: str) -> ssl.SSLContext:
    """Give `context` the listener name its failures are counted under (the metric's label)."""
    setattr(context, _ATTRIBUTE, listener)
    return context


def listener_of(context: ssl.SSLContext | None) -> str:
    return str(getattr(context, _ATTRIBUTE, "") or "tls")


def reason(error: BaseException) -> str:
    """A failed handshake in one word: OpenSSL's reason code (`WRONG_VERSION_NUMBER`,
    `HTTP_REQUEST`, `NO_SHARED_CIPHER`, `TLSV1_ALERT_UNKNOWN_CA`...), or what happened to the
    connection. aiosmtpd wraps the SSL error (its `__cause__`)."""
    cause = error.__cause__ if error.__cause__ is not None else error
    if isinstance(cause, ssl.SSLError):
        code = cause.reason or (cause.args[1] if len(cause.args) > 1 else "") or str(cause)
        return "_".join(str(code).split()) or type(cause).__name__
    # asyncio aborts a handshake that takes too long with ConnectionAbortedError("SSL handshake
    # is taking longer than N seconds"); the client closing mid-handshake is
    # ConnectionResetError (raised as the bare class, so with no text).
    if isinstance(cause, (TimeoutError, ConnectionAbortedError)):
        return "handshake-timeout"
    if isinstance(cause, ConnectionResetError):
        return "connection-reset" if cause.args else "connection-closed"
    if isinstance(cause, (EOFError, BrokenPipeError)):
        return "connection-closed"
    if isinstance(cause, OSError) and cause.errno is not None:
        import errno

        return errno.errorcode.get(cause.errno, str(cause.errno))
    return type(cause).__name__


def address(sockname: object) -> str:
    """`host:port` ([host]:port for IPv6) of a socket address; `?` when unknown."""
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        host = str(sockname[0])
        return f"[{host}]:{sockname[1]}" if ":" in host else f"{host}:{sockname[1]}"
    return "?"


def port(sockname: object) -> str:
    return str(sockname[1]) if isinstance(sockname, tuple) and len(sockname) >= 2 else "?"


def failed(
    context: ssl.SSLContext | None, peer: object, sockname: object, error: BaseException
) -> None:
    """Report a failed server-side handshake: one INFO line, one count."""
    listener = listener_of(context)
    log.info("TLS handshake failed peer=%s port=%s reason=%s",
             address(peer), port(sockname), reason(error))
    metrics.tls_failure(listener)
