"""The IMAP service: listeners from config [imap], wired to the directory, PKI and audit log.

`start(runtime, reuse_port=...)` is what `mssgw serve` calls in every worker process: it opens the
STARTTLS listener (143-style) and the implicit-TLS listener (993-style) and returns the servers.
Logins go through the directory's Authenticator (credential cache, lockouts, suspension);
AUTHENTICATE OAUTHBEARER / XOAUTH2 take a Pro Santé Connect access token when [oidc] has an
issuer (gateway.oidc: same lockouts);
AUTHENTICATE EXTERNAL accepts a client certificate from our CA for an APP mailbox whose address
is in the certificate; reads of a patient's mailbox go to the audit log.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING

from cryptography import x509

from gateway import handshakes, maillog, malloc
from gateway.config import Config, parse_hostport
from gateway.imap.server import end_sessions, serve_connection
from gateway.imap.session import AuthFailed, Hooks, Login
from gateway.oidc.sasl import BearerResponse
from gateway.store.mailstore import REST_AFTER

if TYPE_CHECKING:
    from gateway.runtime import Runtime

log = logging.getLogger("mssgw.imap")


def build_hooks(runtime: Runtime) -> Hooks:
    """What the sessions get from the process's root: its mail stores, authenticator, token
    logins, directory and audit log."""
    from gateway.directory.auth import AuthReason
    from gateway.directory.model import MailboxKind
    from gateway.pki.kinds import Purpose
    from gateway.pki.tls import verify_peer

    config = runtime.config
    directory = runtime.directory
    authenticator = runtime.authenticator
    audit = runtime.audit
    logins = runtime.token_logins

    async def authenticate(address: str, password: str, client_ip: str) -> Login:
        result = await authenticator.authenticate(address, password, client_ip)
        maillog.login("imap", "ok" if result.ok else "locked" if result.retry_after is not None
                      else "failed", user=address, peer=client_ip, mechanism="password",
                      reason=None if result.ok else str(result.reason))
        if result.reason is AuthReason.PASSWORD_NOT_ALLOWED:
            raise AuthFailed("this mailbox does not log in with a password: use a Pro Sante "
                             "Connect token (AUTHENTICATE OAUTHBEARER or XOAUTH2)")
        if not result.ok or result.mailbox is None:
            # One answer for every failure (unknown, wrong password, suspended, locked out):
            # the reason goes to the (mail) log, never to the client.
            raise AuthFailed("authentication failed")
        mailbox = result.mailbox
        return Login(mailbox.address, mailbox.kind is MailboxKind.PATIENT,
                     config.quota.limit(mailbox.kind.value))

    async def authenticate_certificate(ssl_object: object, authzid: str) -> Login:
        try:
            login = await certificate_login(ssl_object, authzid)
        except AuthFailed as exc:
            maillog.login("imap", "failed", user=authzid or "-", peer="",
                          mechanism="certificate", reason=str(exc))
            raise
        maillog.login("imap", "ok", user=login.address, peer="", mechanism="certificate")
        return login

    async def certificate_login(ssl_object: object, authzid: str) -> Login:
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(
            None, verify_peer, config, ssl_object, Purpose.CLIENT  # type: ignore[arg-type]
        )
        if not result or result.certificate is None:
            log.warning("IMAP certificate login refused: %s", result.reason)
            raise AuthFailed(f"certificate refused: {result.reason}")
        addresses = _certificate_addresses(result.certificate)
        address = authzid.strip().lower() or (addresses[0] if len(addresses) == 1 else "")
        if not address or address not in addresses:
            raise AuthFailed("the certificate does not name this mailbox")
        mailbox = directory.get(address)
        if mailbox is None or mailbox.kind is not MailboxKind.APP:
            raise AuthFailed("certificate login is only for application mailboxes")
        if not mailbox.active:
            raise AuthFailed("authentication failed")
        return Login(mailbox.address, False, config.quota.limit(mailbox.kind.value))

    async def authenticate_token(response: BearerResponse, client_ip: str) -> Login:
        assert logins is not None
        result = await logins.login(response, client_ip, "imap")  # logs each refusal
        maillog.login("imap", "ok" if result.mailbox is not None else "locked"
                      if result.retry_after is not None else "failed",
                      user=result.mailbox.address if result.mailbox is not None else "-",
                      peer=client_ip, mechanism="token",
                      reason=None if result.mailbox is not None else result.message)
        if result.mailbox is not None:
            return Login(result.mailbox.address, result.mailbox.kind is MailboxKind.PATIENT,
                         config.quota.limit(result.mailbox.kind.value))
        if result.retry_after is not None:
            raise AuthFailed(f"too many failed logins; try again in "
                             f"{max(1, round(result.retry_after))} s", "UNAVAILABLE")
        if result.temporary:
            raise AuthFailed(f"temporary failure: {result.message}", "UNAVAILABLE")
        raise AuthFailed(f"authentication failed: {result.message}", challenge=result.challenge)

    return Hooks(
        pool=runtime.mail_stores,
        authenticate=authenticate,
        authenticate_certificate=authenticate_certificate,
        authenticate_token=authenticate_token if logins is not None else None,
        audit=audit.record,
        hostname=config.gateway.hostname,
        max_append=config.imap.max_message_size,
    )


def _certificate_addresses(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [a.lower() for a in san.get_values_for_type(x509.RFC822Name)]


def make_tls_context(config: Config) -> ssl.SSLContext:
    from gateway.pki.tls import server_context

    # "optional": application mailboxes may present a client certificate (AUTHENTICATE
    # EXTERNAL); everyone else logs in with a password once TLS is up.
    return handshakes.name_listener(server_context(config, client_certs="optional"), "imap")


def tls_context(runtime: Runtime) -> ssl.SSLContext:
    """The root's IMAP context, made once (by the supervisor, before it forks: `prepare`)."""
    return runtime.made("imap tls", lambda: make_tls_context(runtime.config))


def prepare(runtime: Runtime) -> None:
    """Run by `mssgw serve` before it forks its workers: one TLS context for all of them, so
    they share its session-ticket key. Mail clients resume their TLS sessions (Thunderbird,
    Apple Mail, Outlook, K-9 do), which spares the server the full handshake's RSA signature
    (about half of what a short IMAP session costs it); with a context made in each worker, a
    ticket one worker issued would be refused by the others."""
    tls_context(runtime)


# asyncio (3.11-3.13) gives every TLS connection a zero-filled 256 KiB read buffer, which
# makes 1,000 idle IMAP clients cost 250 MB. A TLS record carries at most 16 KiB, so a 32 KiB
# buffer reads whole records; larger reads only batch them. Lowered process-wide, deliberately:
# every TLS listener of the worker benefits.
TLS_READ_BUFFER = 32 * 1024


def _small_tls_buffers() -> None:
    from asyncio import sslproto

    if getattr(sslproto.SSLProtocol, "max_size", 0) > TLS_READ_BUFFER:
        sslproto.SSLProtocol.max_size = TLS_READ_BUFFER


REST_EVERY = 10.0  # seconds between two looks for stores to rest


async def rest_stores(runtime: Runtime, *, every: float = REST_EVERY) -> asyncio.Task[None]:
    """Every worker: the mail stores nobody used for `REST_AFTER` seconds free their SQLite
    connections (an idle or IDLE session's store holds ~170 KB otherwise; see
    `MaildirStore.rest`), closed in a worker thread since a close may checkpoint and fsync."""
    return asyncio.create_task(_rest_forever(runtime, every), name="mssgw store rest")


def _close_and_trim(closing: Callable[[], None]) -> None:
    closing()
    malloc.trim()  # what the connections held is free, but resident until given back


async def _rest_forever(runtime: Runtime, every: float) -> None:
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(every)
        try:
            closing = runtime.mail_stores.rest_idle(REST_AFTER)
            if closing is not None:
                await loop.run_in_executor(None, _close_and_trim, closing)
        except Exception as exc:  # noqa: BLE001 - said in one line; tried again later
            log.error("could not rest idle mail stores: %s: %s", type(exc).__name__, exc)


def _close_sessions_with(server: asyncio.Server) -> None:
    """Closing the listener also ends its sessions (BYE): IMAP clients stay connected for
    hours, so `mssgw serve` would otherwise wait its whole grace period for them."""
    close = server.close

    def close_all_too() -> None:
        close()
        end_sessions()

    server.close = close_all_too  # type: ignore[method-assign]


async def start(
    runtime: Runtime, *, reuse_port: bool = False, hooks: Hooks | None = None
) -> list[asyncio.Server]:
    """Start the configured IMAP listeners ([imap] starttls and tls; "" disables one)."""
    _small_tls_buffers()
    config = runtime.config
    hooks = hooks or runtime.imap_hooks
    context = tls_context(runtime)
    servers: list[asyncio.Server] = []
    listeners = (("starttls", config.imap.starttls, False), ("tls", config.imap.tls, True))
    for name, address, implicit in listeners:
        if not address:
            continue
        host, port = parse_hostport(address)
        handler = functools.partial(
            serve_connection, hooks, tls_context=context, implicit_tls=implicit
        )
        try:
            server = await asyncio.start_server(
                handler,
                host,
                port,
                ssl=context if implicit else None,
                ssl_handshake_timeout=30 if implicit else None,
                reuse_port=reuse_port or None,
                backlog=1024,
            )
            setattr(server, "mssgw_name", f"imap {name}")  # noqa: B010 - read by gateway.server
            _close_sessions_with(server)
            servers.append(server)
        except BaseException:
            for s in servers:
                s.close()
            raise
    return servers

