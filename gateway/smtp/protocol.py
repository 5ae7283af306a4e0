"""aiosmtpd's SMTP protocol with the few changes a gateway needs.

- The TLS object is kept on the session for STARTTLS and implicit TLS alike (aiosmtpd only records
  it after STARTTLS), so handlers can read the client certificate and the cipher.
- `MAIL FROM:<>` (the null reverse-path of bounces, RFC 5321 4.5.5) is accepted; aiosmtpd refuses
  it as a syntax error. The handler sees it as NULL_SENDER and treats it as "".
- The deprecated `login_data` warning aiosmtpd logs on every AUTH is silenced.
- DATA is read in blocks (gateway.smtp.dotdata) instead of line by line.
- Its idle timer is moved instead of replaced on every command.
- A failed STARTTLS handshake is one log line (`handle_exception`, through
  `gateway.handshakes`), not a traceback.
- AUTH lines may be 12,288 octets (RFC 4954 4): an OAUTHBEARER or XOAUTH2 initial response
  carries a whole access token, past aiosmtpd's 512-octet command and 1,001-octet line limits.
  Other commands keep their 512 octets, and DATA lines RFC 5321's 1,000 (DotData).
- PIPELINING (RFC 2920) is offered: aiosmtpd already reads commands in order from a buffer, so
  grouped MAIL/RCPT/DATA are served as they come; their replies are sent together (one TLS
  record, one send) while more complete command lines wait in the input buffer, as RFC 2920
  3.2 recommends. Only MAIL and RCPT replies are held: every other reply, 354 included, flushes.
Everything that touches aiosmtpd's or asyncio's internals (its module globals, the reader's
buffer) is in gateway.smtp.internals, checked by a test and bypassed when it no longer fits.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import ssl
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, Session, TLSSetupException

from gateway import handshakes, resources
from gateway.smtp import internals
from gateway.smtp.dotdata import DotData

log = logging.getLogger("mssgw.smtp")


class _ImplicitTLSWarning(logging.Filter):
    """aiosmtpd warns "auth_required == True but auth_require_tls == False" for every session
    of the implicit-TLS listener: it only knows TLS begun by STARTTLS, and there the connection
    is encrypted before its first byte. The gateway never configures AUTH without TLS
    otherwise (gateway.smtp.service), so the line only ever misleads."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("auth_required == True but auth_require_tls")


logging.getLogger("mail.log").addFilter(_ImplicitTLSWarning())


NULL_SENDER = "null-sender@mssgw.invalid"
AUTH_LINE_LIMIT = 12288  # RFC 4954 4: an AUTH command line, initial response included
DATA_LINE_LIMIT = SMTP.line_length_limit  # aiosmtpd's 1,001 octets (RFC 5321 4.5.3.1.6)
_NULL_FROM = re.compile(r"^\s*FROM:\s*<>", re.IGNORECASE)
# The everyday `<local@domain> [params]` path: parsed here with one regular expression, since
# aiosmtpd's full RFC 5322 parser costs a fifth of the CPU of a message; anything else (quoted
# local parts, source routes...) still goes through aiosmtpd's parser.
_SIMPLE_PATH = re.compile(
    r"\s*<([A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)>"
    r"((?:\s.*)?)$"
)


class GatewaySession(Session):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.ssl_object: ssl.SSLObject | None = None
        self.mailbox: Any = None  # the authenticated gateway.directory.Mailbox
        self.peer_check: Any = None  # relay: the verified peer certificate (handler.PeerCheck)
        self.mail_size: int | None = None  # SIZE= of the current MAIL
        self.queue_id: str | None = None  # the current DATA's, once assigned (mail log)

    @property
    def login_data(self) -> Any:
        return self._login_data

    @login_data.setter
    def login_data(self, value: Any) -> None:
        self._login_data = value


_CLASS_NAMES: dict[type, frozenset[str]] = {}


def offer_pipelining(responses: list[str]) -> list[str]:
    """The EHLO lines with PIPELINING (for the handlers' `handle_EHLO`)."""
    return [*responses[:1], "250-PIPELINING", *responses[1:]]


class GatewaySMTP(SMTP):
    session: GatewaySession | None  # type: ignore[assignment]
    # The stream reader's limit is the longest line read outside DATA: an AUTH line, or the
    # response to an AUTH challenge. aiosmtpd still holds each command to command_size_limits.
    line_length_limit = AUTH_LINE_LIMIT + 2
    _hold_replies = False  # within MAIL and RCPT, the commands a client may group
    _replies: list[bytes]
    _deadline = 0.0  # loop time at which an idle session is closed

    def __dir__(self) -> list[str]:
        """aiosmtpd's __init__ lists `dir(self)` on every connection to find its `smtp_*`
        methods: a walk over the whole class hierarchy (~70 us, most of what creating a session
        object costs). The class's part is listed once; instance attributes are added."""
        names = _CLASS_NAMES.get(type(self))
        if names is None:
            names = _CLASS_NAMES[type(self)] = frozenset(dir(type(self)))
        return list(names.union(self.__dict__))

    async def push(self, status: str | bytes) -> None:
        if isinstance(status, str):
            status = status.encode("utf-8" if self.enable_SMTPUTF8 else "ascii")
        self._replies.append(status + b"\r\n")
        if self._hold_replies and self._command_waiting():
            return  # sent with the reply to that command
        self._writer.write(b"".join(self._replies))
        self._replies.clear()
        await self._writer.drain()

    def _command_waiting(self) -> bool:
        """A complete command line is already in the input buffer (the client pipelines); its
        reply comes right after this one (gateway.smtp.internals)."""
        return internals.line_waiting(self._reader)

    async def smtp_RCPT(self, arg: str | None) -> None:
        self._hold_replies = True
        try:
            await super().smtp_RCPT(arg)
        finally:
            self._hold_replies = False

    def _reset_timeout(self, duration: float | None = None) -> None:
        """aiosmtpd re-arms the idle timer on every command: a new TimerHandle in the loop's
        heap and the old one cancelled. Here the session's one timer keeps running and only its
        deadline moves; when it fires early it re-arms itself for the rest."""
        deadline = self.loop.time() + (duration or self._timeout_duration)
        self._deadline = deadline
        timer = self._timeout_handle
        if timer is None or timer.cancelled() or timer.when() > deadline:
            if timer is not None:
                timer.cancel()
            self._timeout_handle = self.loop.call_at(deadline, self._idle_check)

    def _idle_check(self) -> None:
        if self.loop.time() < self._deadline:
            self._timeout_handle = self.loop.call_at(self._deadline, self._idle_check)
        else:
            self._timeout_cb()

    def _create_session(self) -> GatewaySession:
        return GatewaySession(self.loop)

    async def handle_exception(self, error: Exception) -> str:
        """aiosmtpd logs a full traceback for any exception of a session, a failed STARTTLS
        handshake included (hundreds during one TLS scan; anyone can cause them on the relay
        port). One line instead: who, on which port, why. A TLSSetupException closes the
        connection (no reply is sent); the machine out of descriptors, memory or disk a
        temporary 451 (the client retries; the session goes on); anything else aiosmtpd's 500."""
        peer = self.session.peer if self.session is not None else None
        if isinstance(error, TLSSetupException):
            handshakes.failed(self.tls_context, peer, self._local, error)
            return "421 4.7.0 TLS handshake failed"
        where = handshakes.address(peer) if isinstance(peer, tuple) else str(peer)
        port = handshakes.port(self._local)
        log.error("session error peer=%s port=%s: %s", where, port, resources.describe(error))
        if resources.exhausted(error):
            return "451 4.3.0 the server is short of resources, try again later"
        return f"500 Error: ({type(error).__name__}) {error}"

    _local: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._replies = []
        self._local = transport.get_extra_info("sockname")
        # aiosmtpd keeps command_size_limits in a dict of its class: ours is per session.
        self.command_size_limits = collections.defaultdict(
            lambda: self.command_size_limit, {"AUTH": AUTH_LINE_LIMIT}
        )
        super().connection_made(transport)
        if self.session is not None:
            self.session.ssl_object = transport.get_extra_info("ssl_object")

    @property
    def tls_active(self) -> bool:
        return self.session is not None and self.session.ssl_object is not None

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        m = _SIMPLE_PATH.match(arg) if arg else None
        if m:
            return m.group(1), m.group(2)
        result: tuple[str | None, str | None] = super()._getaddr(arg)
        return result

    async def smtp_MAIL(self, arg: str | None) -> None:
        if arg and _NULL_FROM.match(arg):
            arg = _NULL_FROM.sub(f"FROM:<{NULL_SENDER}>", arg, count=1)
        self._hold_replies = True
        try:
            await super().smtp_MAIL(arg)
        finally:
            self._hold_replies = False

    async def smtp_DATA(self, arg: str | None) -> None:
        """aiosmtpd's `smtp_DATA` with the content read by `DotData` in blocks.

        Same checks and replies as aiosmtpd 1.4 before and after the content; only the reading
        differs (aiosmtpd's per-line loop was a fifth of the server's CPU per message). When
        gateway.smtp.internals finds asyncio or aiosmtpd changed, aiosmtpd's own DATA runs."""
        if not internals.OK:
            await super().smtp_DATA(arg)
            return
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            content, error = await self._read_data()
        except asyncio.CancelledError:  # the connection went away during DATA
            self._writer.close()
            raise
        if error is not None:
            await self.push(error)
            self._set_post_data_state()
            return
        self.envelope.content = content
        self.envelope.original_content = content
        status = await self._call_handler_hook("DATA") if "DATA" in self._handle_hooks else MISSING
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)

    async def _read_data(self) -> tuple[bytes, str | None]:
        parser = DotData(self.data_size_limit, DATA_LINE_LIMIT)
        result: tuple[bytes, str | None] = await internals.feed_from_buffer(self._reader, parser)
        return result
