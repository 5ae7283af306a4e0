"""The SMTP listeners of one worker process: `start(runtime, reuse_port=...)` for `mssgw serve`.

Three listeners (addresses from [smtp] in config.toml; an empty address disables one):
- `submission`: STARTTLS required before anything but EHLO/NOOP/QUIT; AUTH required.
- `submission_tls`: implicit TLS (the "465" style); AUTH required.
- `relay`: STARTTLS required; peers identified by their client certificate, no AUTH.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway import handshakes, metrics
from gateway.config import Config, parse_hostport
from gateway.smtp.handler import RelayHandler, SubmissionHandler
from gateway.smtp.protocol import GatewaySMTP

if TYPE_CHECKING:
    from gateway.runtime import Runtime

log = logging.getLogger("mssgw.smtp")

# aiosmtpd logs every command at INFO ("mail.log"): far too chatty, and it would log addresses.
logging.getLogger("mail.log").setLevel(logging.WARNING)


def make_tls_contexts(config: Config) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(submission, relay) server contexts from the PKI, with the configured TLS profile."""
    from gateway.pki.tls import server_context

    # Submission: a client certificate is optional (APP mailboxes authenticate with one, SASL
    # EXTERNAL); OpenSSL checks it against our CA and its CRL during the handshake.
    submission = server_context(config, client_certs="optional")
    # Relay: optional at the TLS level so that a peer without one gets an SMTP reply saying why
    # instead of a bare handshake failure; RCPT is refused without a verified certificate.
    relay = server_context(config, client_certs="optional", peers=True)
    return (handshakes.name_listener(submission, "smtp submission"),
            handshakes.name_listener(relay, "smtp relay"))


def tls_contexts(runtime: Runtime) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """The root's SMTP contexts, made once (by the supervisor, before it forks: `prepare`)."""
    return runtime.made("smtp tls", lambda: make_tls_contexts(runtime.config))


def prepare(runtime: Runtime) -> None:
    """Run by `mssgw serve` before it forks its workers: the TLS contexts made once for all of
    them, so they share the session-ticket key and a mail client's TLS session (Thunderbird,
    Outlook, phones and most MTAs resume theirs) resumes on whichever worker the kernel gives
    its next connection, sparing the server a full handshake and its RSA signature."""
    tls_contexts(runtime)


async def start(runtime: Runtime, *, reuse_port: bool = False) -> list[asyncio.Server]:
    """Bind the configured SMTP listeners and return the servers (already serving)."""
    loop = asyncio.get_running_loop()
    config = runtime.config
    gw = runtime.smtp
    submission_ctx, relay_ctx = tls_contexts(runtime)
    s = config.smtp
    size = max([s.max_message_size, *s.domain_size_limits.values()])

    def factory(
        handler: object, *, tls: ssl.SSLContext | None, starttls: bool, auth: bool
    ) -> Callable[[], GatewaySMTP]:
        def make() -> GatewaySMTP:
            return GatewaySMTP(
                handler,
                hostname=config.gateway.hostname,
                ident="mssgw ESMTP",
                data_size_limit=size,
                tls_context=tls if starttls else None,
                require_starttls=starttls,
                auth_required=auth,
                # Implicit TLS: the connection is encrypted from the start, AUTH may follow.
                auth_require_tls=starttls,
                timeout=s.timeout,
                loop=loop,
            )

        def make_quietly() -> GatewaySMTP:
            with warnings.catch_warnings():
                # aiosmtpd warns about AUTH without STARTTLS: on the implicit-TLS listener the
                # whole connection is already encrypted.
                warnings.simplefilter("ignore", UserWarning)
                return make()

        return make if starttls or not auth else make_quietly

    submission = SubmissionHandler(gw)
    relay = RelayHandler(gw)
    plan = [
        ("submission", s.submission, factory(submission, tls=submission_ctx, starttls=True,
                                             auth=True), None),
        ("submission-tls", s.submission_tls, factory(submission, tls=None, starttls=False,
                                                     auth=True), submission_ctx),
        ("relay", s.relay, factory(relay, tls=relay_ctx, starttls=True, auth=False), None),
    ]
    servers: list[asyncio.Server] = []
    try:
        for name, address, make, implicit in plan:
            if not address:
                continue
            host, port = parse_hostport(address)
            server = await loop.create_server(
                metrics.counting(make, f"smtp {name}"), host, port, ssl=implicit,
                reuse_port=reuse_port, backlog=1024,
                ssl_handshake_timeout=30 if implicit else None,
            )
            sockname = server.sockets[0].getsockname()
            log.debug("smtp %s listening on %s:%s", name, sockname[0], sockname[1])
            setattr(server, "mssgw_name", f"smtp {name}")  # noqa: B010 - read by gateway.server
            servers.append(server)
    except BaseException:
        for server in servers:
            server.close()
        raise
    return servers
