"""IMAP over asyncio sockets: bytes between the socket, the parser and the session, nothing else.

One `Connection` per client: it feeds what the client sends to the sans-IO `CommandReader`,
answers literal continuations, hands whole commands to the `Session`, and writes what the
session produced. STARTTLS upgrades the same stream in place (anything the client pipelined
after STARTTLS is dropped, RFC 3501 6.2.1 / CVE-2011-0411). Before login the limits are tight
(small literals, one minute of silence); after login literals may be as large as APPEND allows.

Per command the loop costs one read and one write: responses are collected and written (one TLS
record, one send) only when the loop is about to wait for the client, so pipelined commands get
their answers in one write too. The inactivity limit is one timer per connection, moved on
lazily, not a timer armed and cancelled around every read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import weakref
import zlib

from gateway import handshakes, metrics
from gateway.imap.parser import Command, CommandReader, Continue, RawLine, Reject
from gateway.imap.session import Hooks, Session

log = logging.getLogger("mssgw.imap")

PREAUTH_LITERAL = 8 * 1024
PREAUTH_TIMEOUT = 60.0
AUTOLOGOUT = 30 * 60.0  # RFC 3501 5.4: at least 30 minutes
READ_SIZE = 64 * 1024
FLUSH_AT = 64 * 1024  # answers held back for one write at most
INFLATE_STEP = 1024 * 1024  # most octets one compressed read may expand to before parsing


class Connection:
    def __init__(
        self,
        hooks: Hooks,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        tls_context: ssl.SSLContext | None,
        implicit_tls: bool,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.tls_context = tls_context
        self.parser = CommandReader(max_literal=PREAUTH_LITERAL)
        peer = writer.get_extra_info("peername")
        ssl_object = writer.get_extra_info("ssl_object")
        share_tls_read_buffer(writer.transport)
        self.session = Session(
            hooks,
            self,
            client_ip=str(peer[0]) if peer else "",
            tls=implicit_tls,
            starttls=tls_context is not None and not implicit_tls,
            tls_info=ssl_object,
        )
        self.max_literal = hooks.max_append + 4096
        self._out: list[bytes] = []
        self._pending = 0  # bytes in _out
        self._waiting_since = 0.0  # loop time the current wait for the client began; 0: busy
        self._limit = PREAUTH_TIMEOUT
        self._timer: asyncio.TimerHandle | None = None
        self._timed_out = False
        self._deflate: zlib._Compress | None = None  # COMPRESS=DEFLATE (RFC 4978)
        self._inflate: zlib._Decompress | None = None

    # Channel
    def send(self, data: bytes) -> None:
        self._out.append(data)
        self._pending += len(data)

    async def flush(self) -> None:
        if self._out:
            data = b"".join(self._out)
            self._out.clear()
            self._pending = 0
            if self._deflate is not None:
                data = self._deflate.compress(data) + self._deflate.flush(zlib.Z_SYNC_FLUSH)
            self.writer.write(data)
        await self.writer.drain()

    async def _read(self) -> bytes:
        """The client's next octets, inflated once COMPRESS is on; b"" at its end. A
        compressed read expands by INFLATE_STEP at most at a time, so a small packet cannot
        make us hold gigabytes before the parser's limits see them."""
        inflate = self._inflate
        if inflate is None:
            return await self.reader.read(READ_SIZE)
        while True:
            if inflate.unconsumed_tail:
                data = inflate.decompress(inflate.unconsumed_tail, INFLATE_STEP)
            else:
                raw = await self.reader.read(READ_SIZE)
                if not raw:
                    return b""
                data = inflate.decompress(raw, INFLATE_STEP)
            if data:
                return data

    def _start_compression(self) -> None:
        """Switch to DEFLATE once the COMPRESS OK has been written; what the client already
        sent after COMPRESS is compressed too."""
        self.session.want_compress = False
        self.session.compressed = True
        self._deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
        self._inflate = zlib.decompressobj(-15)
        pending = self.parser.take_pending()
        if pending:
            self.parser.feed(self._inflate.decompress(pending, INFLATE_STEP))

    async def read_line(self, timeout: float | None) -> bytes | None:
        self.parser.expect_line()
        while True:
            ev = self.parser.next_event()
            if isinstance(ev, RawLine):
                return ev.data
            if ev is not None:
                continue  # cannot happen in raw-line mode; ignore defensively
            try:
                async with asyncio.timeout(timeout):  # no task per read, unlike wait_for
                    data = await self._read()
            except TimeoutError:
                return None
            if not data:
                raise EOFError
            self.parser.feed(data)

    async def _wait_for_client(self) -> bytes:
        """The next bytes from the client; b"" at its end or once it was silent for too long
        (`_timed_out`)."""
        loop = asyncio.get_running_loop()
        self._limit = AUTOLOGOUT if self.session.login else PREAUTH_TIMEOUT
        self._waiting_since = loop.time()
        if self._timer is None:
            self._timer = loop.call_at(self._waiting_since + self._limit, self._check_idle)
        try:
            # After NOTIFY (RFC 5465) the session tells what happens while the client is
            # silent: the wait is cut into the session's poll interval.
            interval = self.session.push_interval()
            while interval is not None:
                try:
                    async with asyncio.timeout(interval):
                        return await self._read()
                except TimeoutError:
                    pass
                await self._push()
                if self.session.closing:  # e.g. BYE: the selected mailbox was deleted
                    return b""
                interval = self.session.push_interval()
            return await self._read()
        finally:
            self._waiting_since = 0.0

    async def _push(self) -> None:
        try:
            await self.session.push()
        except (EOFError, ConnectionError):
            raise
        except Exception:  # as for a command: logged, the connection kept
            log.exception("IMAP notification failed")
        await self.flush()

    def _check_idle(self) -> None:
        self._timer = None
        if self._timed_out:
            return
        now = asyncio.get_running_loop().time()
        if self._waiting_since and now >= self._waiting_since + self._limit:
            self._timed_out = True
            self.reader.feed_eof()  # ends the pending read with b""
            return
        since = self._waiting_since or now  # busy with a command: not idle
        self._timer = asyncio.get_running_loop().call_at(since + self._limit, self._check_idle)

    async def run(self) -> None:
        session = self.session
        try:
            self.send(session.greeting())
            while not session.closing:
                ev = self.parser.next_event()
                if ev is None:
                    await self.flush()  # answers go out when we wait, pipelined ones together
                    data = await self._wait_for_client()
                    if not data:
                        if self._timed_out:
                            self.send(b"* BYE autologout: idle for too long\r\n")
                        break
                    self.parser.feed(data)
                    continue
                if isinstance(ev, Continue):
                    self.send(b"+ go ahead\r\n")
                elif isinstance(ev, Reject):
                    session.reject(ev.tag, ev.text, ev.code)
                    if ev.fatal:
                        self.send(b"* BYE " + ev.text.encode() + b"\r\n")
                        break
                elif isinstance(ev, Command):
                    await session.handle(ev)
                    if session.login is not None:
                        self.parser.max_literal = self.max_literal
                    if session.want_starttls:
                        await self.flush()
                        await self._starttls()
                    elif session.want_compress:
                        await self.flush()
                        self._start_compression()
                elif isinstance(ev, RawLine):
                    pass
                if self._pending > FLUSH_AT:  # a long pipeline: do not hold all its answers
                    await self.flush()
            await self.flush()
        except (ConnectionError, EOFError, ssl.SSLError, TimeoutError):
            pass
        except asyncio.CancelledError:  # the listener is shutting down
            with contextlib.suppress(Exception):
                self._out.clear()
                self.writer.write(b"* BYE server shutting down\r\n")
            raise
        finally:
            if self._timer is not None:
                self._timer.cancel()
            session.close()
            with contextlib.suppress(Exception):
                self._close()

    def _close(self) -> None:
        """Close now. Over TLS, asyncio's close sends our close_notify and then waits for the
        client's (up to 30 s) before closing the socket, so a client that waits for the server
        to hang up after LOGOUT (as Dovecot does at once) would stall. RFC 8446 6.1 lets the
        closing side skip that wait: once the close_notify is queued, the TCP transport under
        the TLS one is closed too (it sends what it holds, then FIN)."""
        transport = self.writer.transport
        self.writer.close()
        inner = getattr(getattr(transport, "_ssl_protocol", None), "_transport", None)
        if isinstance(inner, asyncio.Transport) and not inner.is_closing():
            inner.close()

    async def _starttls(self) -> None:
        session = self.session
        session.want_starttls = False
        assert self.tls_context is not None
        self.parser.discard()  # nothing sent in clear after STARTTLS may count
        try:
            await self.writer.start_tls(self.tls_context)
        except (OSError, EOFError) as exc:  # one line, and the connection ends
            handshakes.failed(self.tls_context, self.writer.get_extra_info("peername"),
                              self.writer.get_extra_info("sockname"), exc)
            raise EOFError from None
        share_tls_read_buffer(self.writer.transport)
        session.tls = True
        session.tls_info = self.writer.get_extra_info("ssl_object")


# One TLS read buffer per event loop instead of one per connection.
_SharedBuffer = tuple[bytearray, memoryview]
_read_buffers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _SharedBuffer] = (
    weakref.WeakKeyDictionary()
)


def share_tls_read_buffer(transport: asyncio.BaseTransport) -> None:
    """Give the connection's TLS protocol the event loop's shared read buffer.

    asyncio's TLS protocol (3.11+) owns a bytearray the socket is read into (32 KiB here, see
    `service.TLS_READ_BUFFER`) and copies what each read brought into OpenSSL's input BIO in
    the same call (`get_buffer`, `recv_into`, `buffer_updated`, with no await between them):
    the buffer holds nothing from one read to the next. So every connection of a loop can read
    into the same one; an idle IMAP connection then costs 32 KiB less (a third of what 1,000
    idle clients cost a worker). Private attributes: when a Python version lays them out
    otherwise, the connection keeps its own buffer, as before."""
    protocol = getattr(transport, "_ssl_protocol", None)
    own = getattr(protocol, "_ssl_buffer", None)
    if not isinstance(own, bytearray) or not hasattr(protocol, "_ssl_buffer_view"):
        return
    loop = asyncio.get_running_loop()
    shared = _read_buffers.get(loop)
    if shared is None or len(shared[0]) < len(own):
        buffer = bytearray(len(own))
        shared = _read_buffers[loop] = (buffer, memoryview(buffer))
    protocol._ssl_buffer, protocol._ssl_buffer_view = shared  # type: ignore[union-attr]


async def serve_connection(
    hooks: Hooks,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    tls_context: ssl.SSLContext | None,
    implicit_tls: bool,
) -> None:
    conn = Connection(hooks, reader, writer, tls_context=tls_context, implicit_tls=implicit_tls)
    task = asyncio.current_task()
    if task is not None:
        _live.add(task)
    metrics.connection("imap tls" if implicit_tls else "imap starttls")
    metrics.imap_session_opened()
    try:
        await conn.run()
    except Exception:  # one broken connection never takes the listener down
        log.exception("IMAP connection failed")
    except asyncio.CancelledError:
        pass  # shutting down: the connection is closed in run()'s finally
    finally:
        metrics.imap_session_closed()
        if task is not None:
            _live.discard(task)


_live: set[asyncio.Task[None]] = set()


def end_sessions() -> None:
    """Cancel every IMAP session of the running loop: each says BYE and closes its socket."""
    loop = asyncio.get_running_loop()
    for task in list(_live):
        if task.get_loop() is loop:
            task.cancel()


async def close_all() -> None:
    """End every connection of this event loop (shutdown): each one closes its socket."""
    tasks = [t for t in _live if t.get_loop() is asyncio.get_running_loop()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
