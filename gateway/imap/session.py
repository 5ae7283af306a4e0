"""The IMAP command logic of one connection (RFC 3501 + IDLE, UIDPLUS, MOVE, NAMESPACE, ID,
ENABLE, LITERAL+, SASL-IR, SPECIAL-USE, CONDSTORE, QRESYNC, UNSELECT, CHILDREN, ESEARCH, BINARY,
LIST-EXTENDED, LIST-STATUS, NOTIFY...).

A `Session` takes parsed commands (gateway.imap.parser) and writes responses to a `Channel`;
it knows nothing of sockets, so tests drive it with an in-memory channel. The mail itself is
behind the `MailStore` interface (gateway.store.interfaces); logins go through the `Hooks` the
service supplies (the directory's authenticator with its credential cache, the audit log).

This module holds the dispatch by state and the commands valid in any state (CAPABILITY, NOOP,
LOGOUT, ID, IDLE, UID); the command groups are mixins over `state.SessionState`:
`auth` (STARTTLS, LOGIN, AUTHENTICATE), `mailboxes` (SELECT ... APPEND), `listing` (LIST,
LSUB), `fetch` (FETCH), `messages` (STORE, SEARCH, COPY, MOVE, EXPUNGE), `notify` (NOTIFY, and
what it tells while the client is silent), and `updates`, which keeps the selected mailbox's
view true and reports other sessions' changes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from gateway import resources
from gateway.imap.auth import AuthCommands
from gateway.imap.notify import NotifyCommands
from gateway.imap.parser import Atom, Command, SyntaxProblem, Token, as_atom
from gateway.imap.sort import SortCommands
from gateway.imap.state import (  # re-exported: the service, server and tests import them from here
    BASE_CAPS,
    AuthFailed,
    Bad,
    Channel,
    Hooks,
    Login,
    No,
    Selected,
    _no_args,
)
from gateway.store.interfaces import StoreError

__all__ = [
    "AuthFailed", "BASE_CAPS", "Channel", "Hooks", "Login", "No", "Bad", "Selected", "Session",
]

log = logging.getLogger("mssgw.imap")

IDLE_POLL = 0.5  # seconds between two looks at the index during IDLE
IDLE_TIMEOUT = 30 * 60


class Session(AuthCommands, NotifyCommands, SortCommands):
    """One connection: dispatch by state, and the commands valid in any state."""

    def greeting(self) -> bytes:
        caps = self.capabilities()
        return f"* OK [CAPABILITY {caps}] {self.hooks.hostname} IMAP ready\r\n".encode()

    def reject(self, tag: str | None, text: str, code: str | None = None) -> None:
        """A command the parser refused."""
        if tag is None:
            self.io.send(f"* BAD {text}\r\n".encode())
        elif code:
            self.tagged(tag, "NO" if code == "TOOBIG" else "BAD", text, code)
        else:
            self.tagged(tag, "BAD", text)

    def close(self) -> None:
        if self.store is not None and self.login is not None:
            self.hooks.pool.release(self.login.address)
            self.store = None

    # --- dispatch ------------------------------------------------------------------------

    async def handle(self, cmd: Command) -> None:
        name = cmd.name
        handler = _HANDLERS.get(name)
        try:
            if handler is None:
                raise Bad(f"unknown command {name[:40]}")
            states, fn = handler
            state = "selected" if self.selected else "auth" if self.login else "noauth"
            if state not in states:
                raise Bad(_state_error(name, state))
            await fn(self, cmd.tag, cmd.args)
            cleanup = self.store.cleanup() if self.store is not None else None
            if cleanup is not None:  # e.g. unlinking expunged files: off the event loop
                asyncio.get_running_loop().run_in_executor(None, cleanup)
        except Bad as exc:
            self.tagged(cmd.tag, "BAD", str(exc))
        except SyntaxProblem as exc:
            self.tagged(cmd.tag, "BAD", f"{name} {exc}")
        except No as exc:
            self.tagged(cmd.tag, "NO", str(exc), exc.code)
        except StoreError as exc:
            self.tagged(cmd.tag, "NO", str(exc), exc.code)
        except (EOFError, ConnectionError):
            raise
        except Exception as exc:  # keep the connection: log, and tell the client it failed
            who = self.login.address if self.login else "-"
            if resources.exhausted(exc):  # RFC 5530 UNAVAILABLE: try again later
                log.error("IMAP %s failed for %s: %s", name, who, resources.describe(exc))
                self.tagged(cmd.tag, "NO", f"{name} failed: the server is short of resources,"
                            " try again later", "UNAVAILABLE")
                return
            log.exception("IMAP %s failed for %s", name, who)
            self.tagged(cmd.tag, "NO", f"{name} failed: internal error", "SERVERBUG")

    # --- any state -----------------------------------------------------------------------

    async def cmd_capability(self, tag: str, args: list[Token]) -> None:
        _no_args(args)
        self.untagged(f"CAPABILITY {self.capabilities()}")
        self.tagged(tag, "OK", "CAPABILITY completed")

    async def cmd_noop(self, tag: str, args: list[Token]) -> None:
        _no_args(args)
        await self._idle_poll(force=True)
        self.tagged(tag, "OK", "NOOP completed")

    async def cmd_logout(self, tag: str, args: list[Token]) -> None:
        _no_args(args)
        self.untagged("BYE logging out")
        self.tagged(tag, "OK", "LOGOUT completed")
        self.closing = True

    async def cmd_id(self, tag: str, args: list[Token]) -> None:
        if len(args) != 1 or not (args[0] == Atom("NIL") or isinstance(args[0], list)):
            raise Bad("ID expects NIL or a list of field/value pairs")
        self.send(b'* ID ("name" "mssgw" "vendor" "mssgw")')
        self.tagged(tag, "OK", "ID completed")

    async def cmd_idle(self, tag: str, args: list[Token]) -> None:
        _no_args(args)
        self.io.send(b"+ idling\r\n")
        deadline = time.monotonic() + IDLE_TIMEOUT
        while True:
            await self._idle_poll()
            await self.io.flush()
            line = await self.io.read_line(IDLE_POLL)
            if line is None:
                if time.monotonic() > deadline:
                    self.untagged("BYE idle for too long")
                    self.closing = True
                    return
                continue
            if line.strip().upper() == b"DONE":
                self.tagged(tag, "OK", "IDLE terminated")
            else:
                self.tagged(tag, "BAD", "expected DONE to end IDLE")
            return

    async def cmd_compress(self, tag: str, args: list[Token]) -> None:
        """RFC 4978: after the OK, both directions are raw DEFLATE (the server switches)."""
        if len(args) != 1:
            raise Bad("COMPRESS expects a mechanism")
        mechanism = as_atom(args[0], "compression mechanism").upper()
        if self.compressed:
            raise No("DEFLATE already active", "COMPRESSIONACTIVE")
        if mechanism != "DEFLATE":
            raise No(f"unsupported compression mechanism {mechanism[:20]}", "CANNOT")
        self.tagged(tag, "OK", "DEFLATE active")
        self.want_compress = True

    async def cmd_uid(self, tag: str, args: list[Token]) -> None:
        if not args:
            raise Bad("UID expects a command")
        sub = as_atom(args[0], "UID command").upper()
        rest = args[1:]
        if sub == "FETCH":
            await self.cmd_fetch(tag, rest, uid=True)
        elif sub == "STORE":
            await self.cmd_store(tag, rest, uid=True)
        elif sub == "SEARCH":
            await self.cmd_search(tag, rest, uid=True)
        elif sub == "SORT":
            await self.cmd_sort(tag, rest, uid=True)
        elif sub == "THREAD":
            await self.cmd_thread(tag, rest, uid=True)
        elif sub == "COPY":
            await self.cmd_copy(tag, rest, uid=True)
        elif sub == "MOVE":
            await self.cmd_move(tag, rest, uid=True)
        elif sub == "EXPUNGE":
            if len(rest) != 1:
                raise Bad("UID EXPUNGE expects a UID set")
            await self.cmd_expunge(tag, [], uid_set=as_atom(rest[0], "UID set"))
        else:
            raise Bad(f"unknown UID command {sub[:20]}")


def _state_error(name: str, state: str) -> str:
    if state == "noauth":
        return f"{name} is not allowed before login"
    if state == "auth":
        return f"{name} needs a selected mailbox" if name in _SELECTED_ONLY else \
            f"{name} is not allowed after login"
    return f"{name} is not allowed now"


_ANY = ("noauth", "auth", "selected")
_AUTHED = ("auth", "selected")
_SELECTED_ONLY = {"CHECK", "CLOSE", "UNSELECT", "EXPUNGE", "SEARCH", "FETCH", "STORE", "COPY",
                  "MOVE", "UID", "SORT", "THREAD", "CANCELUPDATE"}

_HANDLERS: dict[str, tuple[tuple[str, ...], Callable[..., Awaitable[None]]]] = {
    "CAPABILITY": (_ANY, Session.cmd_capability),
    "NOOP": (_ANY, Session.cmd_noop),
    "LOGOUT": (_ANY, Session.cmd_logout),
    "ID": (_ANY, Session.cmd_id),
    "STARTTLS": (("noauth",), Session.cmd_starttls),
    "LOGIN": (("noauth",), Session.cmd_login),
    "AUTHENTICATE": (("noauth",), Session.cmd_authenticate),
    "ENABLE": (_AUTHED, Session.cmd_enable),
    "NOTIFY": (_AUTHED, Session.cmd_notify),
    "COMPRESS": (_AUTHED, Session.cmd_compress),
    "GETQUOTAROOT": (_AUTHED, Session.cmd_getquotaroot),
    "GETQUOTA": (_AUTHED, Session.cmd_getquota),
    "SETQUOTA": (_AUTHED, Session.cmd_setquota),
    "NAMESPACE": (_AUTHED, Session.cmd_namespace),
    "SELECT": (_AUTHED, Session.cmd_select),
    "EXAMINE": (_AUTHED, Session.cmd_examine),
    "CREATE": (_AUTHED, Session.cmd_create),
    "DELETE": (_AUTHED, Session.cmd_delete),
    "RENAME": (_AUTHED, Session.cmd_rename),
    "SUBSCRIBE": (_AUTHED, Session.cmd_subscribe),
    "UNSUBSCRIBE": (_AUTHED, Session.cmd_unsubscribe),
    "LIST": (_AUTHED, Session.cmd_list),
    "LSUB": (_AUTHED, Session.cmd_lsub),
    "STATUS": (_AUTHED, Session.cmd_status),
    "APPEND": (_AUTHED, Session.cmd_append),
    "IDLE": (_AUTHED, Session.cmd_idle),
    "CHECK": (("selected",), Session.cmd_check),
    "CLOSE": (("selected",), Session.cmd_close),
    "UNSELECT": (("selected",), Session.cmd_unselect),
    "EXPUNGE": (("selected",), Session.cmd_expunge),
    "UID": (("selected",), Session.cmd_uid),
    "FETCH": (("selected",), Session.cmd_fetch),
    "STORE": (("selected",), Session.cmd_store),
    "SEARCH": (("selected",), Session.cmd_search),
    "SORT": (("selected",), Session.cmd_sort),
    "THREAD": (("selected",), Session.cmd_thread),
    "CANCELUPDATE": (("selected",), Session.cmd_cancelupdate),
    "COPY": (("selected",), Session.cmd_copy),
    "MOVE": (("selected",), Session.cmd_move),
}
