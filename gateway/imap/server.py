"""IMAP over asyncio sockets: bytes between the socket, the parser and the session, nothing else.

One `Connection` per client: it feeds what the client sends to the sans-IO `CommandReader`,
answers literal continuations, hands whole commands to the `Session`, and writes what the
session produced. STARTTLS upgrades the same stream in place (anything the client pipelined
after STARTTLS is dropped, RFC 3501 6.2.1 / CVE-2011-0411). Before login the limits are tight
(small literals, one minute of silence); after login literals may be as large as APPEND allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl

from gateway.imap.parser import Command, CommandReader, Continue, RawLine, Reject
from gateway.imap.session import Hooks, Session

log = logging.getLogger("mssgw.imap")

PREAUTH_LITERAL = 8 * 1024
PREAUTH_TIMEOUT = 60.0
AUTOLOGOUT = 30 * 60.0  # RFC 3501 5.4: at least 30 minutes
READ_SIZE = 64 * 1024


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

    # Channel
    def send(self, data: bytes) -> None:
        self._out.append(data)

    async def flush(self) -> None:
        if self._out:
            data = b"".join(self._out)
            self._out.clear()
            self.writer.write(data)
        await self.writer.drain()

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
                    data = await self.reader.read(READ_SIZE)
            except TimeoutError:
                return None
            if not data:
                raise EOFError
            self.parser.feed(data)

    async def run(self) -> None:
        session = self.session
        try:
            self.send(session.greeting())
            await self.flush()
            while not session.closing:
                ev = self.parser.next_event()
                if ev is None:
                    timeout = AUTOLOGOUT if session.login else PREAUTH_TIMEOUT
                    try:
                        async with asyncio.timeout(timeout):
                            data = await self.reader.read(READ_SIZE)
                    except TimeoutError:
                        self.send(b"* BYE autologout: idle for too long\r\n")
                        break
                    if not data:
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
                elif isinstance(ev, RawLine):
                    pass
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
            session.close()
            with contextlib.suppress(Exception):
                self.writer.close()

    async def _starttls(self) -> None:
        session = self.session
        session.want_starttls = False
        assert self.tls_context is not None
        self.parser.discard()  # nothing sent in clear after STARTTLS may count
        await self.writer.start_tls(self.tls_context)
        session.tls = True
        session.tls_info = self.writer.get_extra_info("ssl_object")


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
    try:
        await conn.run()
    except Exception:  # one broken connection never takes the listener down
        log.exception("IMAP connection failed")
    except asyncio.CancelledError:
        pass  # shutting down: the connection is closed in run()'s finally
    finally:
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
