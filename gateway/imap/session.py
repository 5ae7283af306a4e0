"""The IMAP command logic of one connection (RFC 3501 + IDLE, UIDPLUS, MOVE, NAMESPACE, ID,
ENABLE, LITERAL+, SASL-IR, SPECIAL-USE, CONDSTORE, UNSELECT, CHILDREN).

A `Session` takes parsed commands (gateway.imap.parser) and writes responses to a `Channel`;
it knows nothing of sockets, so tests drive it with an in-memory channel. The mail itself is
behind gateway.store.mailstore; logins go through the `Hooks` the service supplies (the
directory's authenticator with its credential cache, the audit log).

Other sessions' changes (a delivery, another client's STORE or EXPUNGE, possibly in another
worker process) reach this one through the index's per-folder MODSEQ: after each command, and
twice a second during IDLE, `_notify` asks the index what changed since the MODSEQ this session
has seen and sends untagged EXISTS / EXPUNGE / FETCH. EXPUNGE is held back during FETCH, STORE
and SEARCH, whose sequence numbers it would shift (RFC 3501 7.4.1).
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import dataclasses
import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from gateway.imap import mime, utf7
from gateway.imap.parser import (
    Atom,
    Command,
    SyntaxProblem,
    Token,
    as_atom,
    as_list,
    as_number,
    as_text,
    parse_sequence_set,
)
from gateway.imap.search import (
    BadCharset,
    Candidate,
    matches,
    needs_message,
    parse_search,
    uses_modseq,
)
from gateway.imap.syntax import (
    FETCH_MACROS,
    FetchItem,
    flag_list,
    imap_date,
    literal,
    parse_fetch_item,
    parse_imap_datetime,
    quote,
    seq_set,
)
from gateway.store.mailstore import (
    DELIMITER,
    Folder,
    MailStore,
    MessageInfo,
    StoreError,
    StorePool,
    unlink_all,
)

log = logging.getLogger("mssgw.imap")

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
_SYSTEM_LOWER = {f.lower(): f for f in SYSTEM_FLAGS}
BASE_CAPS = (
    "IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE UIDPLUS MOVE SPECIAL-USE CONDSTORE"
    " UNSELECT CHILDREN"
)
IDLE_POLL = 0.5  # seconds between two looks at the index during IDLE
IDLE_TIMEOUT = 30 * 60
MAX_LOGIN_FAILURES = 3


class Channel(Protocol):
    """What a session needs from its connection."""

    def send(self, data: bytes) -> None: ...

    async def flush(self) -> None: ...

    async def read_line(self, timeout: float | None) -> bytes | None:
        """The next raw line from the client (no CRLF); None on timeout; EOFError if gone."""
        ...


@dataclass(frozen=True)
class Login:
    """A successful authentication: the mailbox address and whether it is a patient's."""

    address: str
    patient: bool = False


class AuthFailed(Exception):
    """Refused login; `code` is the IMAP response code (AUTHENTICATIONFAILED, ...)."""

    def __init__(self, text: str, code: str = "AUTHENTICATIONFAILED") -> None:
        super().__init__(text)
        self.code = code


@dataclass
class Hooks:
    """What the service plugs in: authentication, the audit log, limits."""

    pool: StorePool
    # (address, password, client ip) -> Login, or raises AuthFailed
    authenticate: Callable[[str, str, str], Awaitable[Login]]
    # (session's TLS peer info, authorisation id or "") -> Login, or raises AuthFailed
    authenticate_certificate: Callable[[object, str], Awaitable[Login]] | None = None
    audit: Callable[[str, str, str, dict[str, object]], None] = lambda *a: None
    hostname: str = "localhost"
    max_append: int = 64 * 1024 * 1024


class Bad(Exception):
    """A tagged BAD (syntax, wrong state)."""


class No(Exception):
    """A tagged NO (refused operation), with an optional response code."""

    def __init__(self, text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.code = code


@dataclass
class Selected:
    folder: Folder
    readonly: bool
    uids: list[int]
    modseq: int  # highest MODSEQ whose changes this session has reported
    flags: dict[int, str] = field(default_factory=dict)  # uid -> flags text, when not empty
    keywords: set[str] = field(default_factory=set)  # announced in the last FLAGS response
    recent: set[int] = field(default_factory=set)
    own: dict[int, int] = field(default_factory=dict)  # uid -> modseq of this session's STOREs

    @property
    def exists(self) -> int:
        return len(self.uids)

    def recent_count(self) -> int:
        # A claim may take a message adopted after our last look: it counts once we list it.
        last = self.uids[-1] if self.uids else 0
        return sum(1 for u in self.recent if u <= last)

    def set_flags(self, uid: int, flags: tuple[str, ...]) -> None:
        if flags:
            self.flags[uid] = " ".join(flags)
        else:
            self.flags.pop(uid, None)

    def seq_of(self, uid: int) -> int:
        i = bisect.bisect_left(self.uids, uid)
        return i + 1 if i < len(self.uids) and self.uids[i] == uid else 0


class Session:
    def __init__(
        self,
        hooks: Hooks,
        channel: Channel,
        *,
        client_ip: str = "",
        tls: bool = False,
        starttls: bool = True,
        tls_info: object = None,
    ) -> None:
        self.hooks = hooks
        self.io = channel
        self.client_ip = client_ip
        self.tls = tls
        self.starttls_offered = starttls
        self.tls_info = tls_info  # the ssl object, for AUTHENTICATE EXTERNAL
        self.login: Login | None = None
        self.store: MailStore | None = None
        self.selected: Selected | None = None
        self.condstore = False
        self.failures = 0
        self.want_starttls = False
        self.closing = False

    # --- plumbing ------------------------------------------------------------------------

    def capabilities(self) -> str:
        caps = BASE_CAPS
        if self.login is None:
            if not self.tls:
                if self.starttls_offered:
                    caps += " STARTTLS"
                caps += " LOGINDISABLED"
            else:
                caps += " AUTH=PLAIN"
                if self.hooks.authenticate_certificate is not None and self._has_cert():
                    caps += " AUTH=EXTERNAL"
        return caps

    def _has_cert(self) -> bool:
        getpeercert = getattr(self.tls_info, "getpeercert", None)
        return bool(getpeercert and getpeercert(binary_form=True))

    def greeting(self) -> bytes:
        caps = self.capabilities()
        return f"* OK [CAPABILITY {caps}] {self.hooks.hostname} IMAP ready\r\n".encode()

    def send(self, line: bytes) -> None:
        self.io.send(line + b"\r\n")

    def untagged(self, text: str) -> None:
        self.io.send(b"* " + text.encode() + b"\r\n")

    def tagged(self, tag: str, status: str, text: str, code: str | None = None) -> None:
        c = f"[{code}] " if code else ""
        self.io.send(f"{tag} {status} {c}{text}\r\n".encode())

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
            if self.store is not None and self.store.garbage:
                asyncio.get_running_loop().run_in_executor(
                    None, unlink_all, self.store.take_garbage()
                )
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
        except Exception:  # keep the connection: log, and tell the client it failed
            log.exception("IMAP %s failed for %s", name, self.login.address if self.login else "-")
            self.tagged(cmd.tag, "NO", f"{name} failed: internal error", "SERVERBUG")

    def _folder_name(self, tok: Token) -> str:
        text = as_text(tok, "mailbox name")
        try:
            name = utf7.decode(text)
        except ValueError as exc:
            raise Bad(str(exc)) from None
        return "INBOX" if name.upper() == "INBOX" else name

    def _wire_name(self, name: str) -> bytes:
        return quote(utf7.encode(name))

    def _get_folder(self, tok: Token) -> Folder:
        assert self.store is not None
        name = self._folder_name(tok)
        folder = self.store.folder(name)
        if folder is None:
            raise No(f"no mailbox named {name}", "NONEXISTENT")
        return folder

    # --- any state -----------------------------------------------------------------------

    async def cmd_capability(self, tag: str, args: list[Token]) -> None:
        _no_args(args)
        self.untagged(f"CAPABILITY {self.capabilities()}")
        self.tagged(tag, "OK", "CAPABILITY completed")

    async def cmd_noop(self, tag: str, args: list[Token]) -> None:
        _no_args(args)
        await self._notify(True)
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

    # --- not authenticated ---------------------------------------------------------------

    async def cmd_starttls(self, tag: str, args: list[Token]) -> None:
        _no_args(args)
        if self.tls or not self.starttls_offered:
            raise Bad("TLS is already active")
        self.tagged(tag, "OK", "Begin TLS negotiation now")
        self.want_starttls = True

    async def cmd_login(self, tag: str, args: list[Token]) -> None:
        if len(args) != 2:
            raise Bad("LOGIN expects a user name and a password")
        if not self.tls:
            raise No("LOGIN is disabled before STARTTLS", "PRIVACYREQUIRED")
        user = as_text(args[0], "user name")
        password = as_text(args[1], "password")
        await self._authenticate(tag, user, password)

    async def cmd_authenticate(self, tag: str, args: list[Token]) -> None:
        if not args or len(args) > 2:
            raise Bad("AUTHENTICATE expects a mechanism and an optional initial response")
        mech = as_atom(args[0], "mechanism").upper()
        if not self.tls:
            raise No("authentication is disabled before STARTTLS", "PRIVACYREQUIRED")
        if mech not in ("PLAIN", "EXTERNAL"):
            raise No(f"unsupported mechanism {mech[:20]}", "CANNOT")
        if len(args) == 2:
            initial = as_text(args[1], "initial response")
            response = b"" if initial == "=" else _b64(initial)
        else:
            self.io.send(b"+ \r\n")
            await self.io.flush()
            line = await self.io.read_line(60)
            if line is None:
                raise Bad("authentication timed out")
            if line.strip() == b"*":
                raise Bad("authentication cancelled")
            response = _b64(line.decode("ascii", "replace").strip())
        if mech == "EXTERNAL":
            if self.hooks.authenticate_certificate is None or not self._has_cert():
                raise No("no client certificate was presented", "AUTHENTICATIONFAILED")
            try:
                login = await self.hooks.authenticate_certificate(
                    self.tls_info, response.decode("utf-8", "replace")
                )
            except AuthFailed as exc:
                await self._failed(tag, exc)
                return
            self._logged_in(tag, login)
            return
        parts = response.split(b"\0")
        if len(parts) != 3:
            raise Bad("malformed PLAIN response")
        authzid, user, password = (p.decode("utf-8", "replace") for p in parts)
        if authzid and authzid.lower() != user.lower():
            raise No("acting for another user is not allowed", "AUTHORIZATIONFAILED")
        await self._authenticate(tag, user, password)

    async def _authenticate(self, tag: str, user: str, password: str) -> None:
        try:
            login = await self.hooks.authenticate(user, password, self.client_ip)
        except AuthFailed as exc:
            await self._failed(tag, exc)
            return
        self._logged_in(tag, login)

    async def _failed(self, tag: str, exc: AuthFailed) -> None:
        self.failures += 1
        if self.failures >= MAX_LOGIN_FAILURES:
            self.untagged("BYE too many failed logins")
            self.closing = True
        self.tagged(tag, "NO", str(exc), exc.code)

    def _logged_in(self, tag: str, login: Login) -> None:
        self.store = self.hooks.pool.acquire(login.address)
        self.login = login
        self.tagged(tag, "OK", "Logged in", f"CAPABILITY {self.capabilities()}")

    # --- authenticated -------------------------------------------------------------------

    async def cmd_enable(self, tag: str, args: list[Token]) -> None:
        if not args:
            raise Bad("ENABLE expects capability names")
        enabled = []
        for a in args:
            if as_atom(a, "capability").upper() == "CONDSTORE" and not self.condstore:
                self.condstore = True
                enabled.append("CONDSTORE")
        self.untagged("ENABLED" + "".join(" " + e for e in enabled))
        self.tagged(tag, "OK", "ENABLE completed")

    async def cmd_namespace(self, tag: str, args: list[Token]) -> None:
        _no_args(args)
        self.untagged(f'NAMESPACE (("" "{DELIMITER}")) NIL NIL')
        self.tagged(tag, "OK", "NAMESPACE completed")

    async def cmd_select(self, tag: str, args: list[Token], readonly: bool = False) -> None:
        if not args or len(args) > 2:
            raise Bad("SELECT expects a mailbox name")
        if len(args) == 2:
            params = as_list(args[1], "select parameters")
            if [str(p).upper() for p in params] != ["CONDSTORE"]:
                raise Bad("unsupported SELECT parameter")
            self.condstore = True
        assert self.store is not None
        if self.selected is not None:
            self.selected = None
            if self.condstore:
                self.untagged("OK [CLOSED] previous mailbox closed")
        folder = self._get_folder(args[0])
        self.store.import_new(folder)
        folder = self.store.folder_by_id(folder.id) or folder
        view = self.store.view(folder)
        uids = view.uids
        sel = Selected(folder, readonly, uids, view.modseq, flags=view.flags)
        sel.keywords = set(folder.keywords)
        if not readonly:
            sel.recent = self.store.claim_recent(folder)
        seen = sum(1 for text in view.flags.values() if "\\Seen" in text)
        self._send_flags(sel)
        self.untagged(f"{len(uids)} EXISTS")
        self.untagged(f"{sel.recent_count()} RECENT")
        if seen < len(uids):
            first = next(
                i for i, u in enumerate(uids, 1) if "\\Seen" not in view.flags.get(u, "")
            )
            self.untagged(f"OK [UNSEEN {first}] first unseen message")
        uidnext = max(folder.uidnext, uids[-1] + 1 if uids else 1)
        self.untagged(f"OK [UIDVALIDITY {folder.uidvalidity}] UIDs valid")
        self.untagged(f"OK [UIDNEXT {uidnext}] predicted next UID")
        self.untagged(f"OK [HIGHESTMODSEQ {view.modseq}] highest mod-sequence")
        self.selected = sel
        self._audit("imap.select", {"folder": folder.name, "messages": len(uids)})
        mode = "READ-ONLY" if readonly else "READ-WRITE"
        self.tagged(tag, "OK", f"{'EXAMINE' if readonly else 'SELECT'} completed", mode)

    async def cmd_examine(self, tag: str, args: list[Token]) -> None:
        await self.cmd_select(tag, args, readonly=True)

    async def cmd_create(self, tag: str, args: list[Token]) -> None:
        if len(args) != 1:
            raise Bad("CREATE expects a mailbox name")
        assert self.store is not None
        name = self._folder_name(args[0]).rstrip(DELIMITER)
        self.store.create_folder(name)
        self.tagged(tag, "OK", "CREATE completed")

    async def cmd_delete(self, tag: str, args: list[Token]) -> None:
        if len(args) != 1:
            raise Bad("DELETE expects a mailbox name")
        assert self.store is not None
        name = self._folder_name(args[0])
        if self.selected and self.selected.folder.name == name:
            self.selected = None
        self.store.delete_folder(name)
        self.tagged(tag, "OK", "DELETE completed")

    async def cmd_rename(self, tag: str, args: list[Token]) -> None:
        if len(args) != 2:
            raise Bad("RENAME expects two mailbox names")
        assert self.store is not None
        self.store.rename_folder(self._folder_name(args[0]), self._folder_name(args[1]))
        await self._notify(True)
        self.tagged(tag, "OK", "RENAME completed")

    async def cmd_subscribe(self, tag: str, args: list[Token], on: bool = True) -> None:
        if len(args) != 1:
            raise Bad("expects a mailbox name")
        assert self.store is not None
        self.store.subscribe(self._folder_name(args[0]), on)
        self.tagged(tag, "OK", f"{'SUBSCRIBE' if on else 'UNSUBSCRIBE'} completed")

    async def cmd_unsubscribe(self, tag: str, args: list[Token]) -> None:
        await self.cmd_subscribe(tag, args, on=False)

    async def cmd_list(self, tag: str, args: list[Token], lsub: bool = False) -> None:
        verb = "LSUB" if lsub else "LIST"
        if len(args) != 2:
            raise Bad(f"{verb} expects a reference and a mailbox pattern")
        assert self.store is not None
        ref = utf7.decode(as_text(args[0], "reference"))
        pattern = utf7.decode(as_text(args[1], "pattern"))
        if not pattern:
            if not lsub:
                self.send(b'* LIST (\\Noselect) "' + DELIMITER.encode() + b'" ""')
            self.tagged(tag, "OK", f"{verb} completed")
            return
        if ref and not ref.endswith(DELIMITER) and not pattern.startswith(DELIMITER):
            full = ref + DELIMITER + pattern
        else:
            full = ref + pattern
        rx = _pattern(full)
        folders = self.store.folders()
        names = {f.name for f in folders}
        for f in folders:
            if not rx.match(f.name):
                continue
            if lsub and not f.subscribed:
                continue
            attrs = []
            prefix = f.name + DELIMITER
            attrs.append(
                "\\HasChildren" if any(n.startswith(prefix) for n in names) else "\\HasNoChildren"
            )
            if f.special_use:
                attrs.append(f.special_use)
            line = f'* {verb} ({" ".join(attrs)}) "{DELIMITER}" '.encode()
            self.send(line + self._wire_name(f.name))
        self.tagged(tag, "OK", f"{verb} completed")

    async def cmd_lsub(self, tag: str, args: list[Token]) -> None:
        await self.cmd_list(tag, args, lsub=True)

    async def cmd_status(self, tag: str, args: list[Token]) -> None:
        if len(args) != 2:
            raise Bad("STATUS expects a mailbox name and a list of items")
        assert self.store is not None
        items = [as_atom(i, "status item").upper() for i in as_list(args[1], "status items")]
        if not items:
            raise Bad("STATUS needs at least one item")
        folder = self._get_folder(args[0])
        self.store.import_new(folder)
        folder = self.store.folder_by_id(folder.id) or folder
        total, unseen, recent = self.store.counts(folder)
        values = {
            "MESSAGES": total,
            "RECENT": recent,
            "UIDNEXT": folder.uidnext,
            "UIDVALIDITY": folder.uidvalidity,
            "UNSEEN": unseen,
            "HIGHESTMODSEQ": folder.highestmodseq,
        }
        out = []
        for item in items:
            if item not in values:
                raise Bad(f"unknown STATUS item {item[:20]}")
            out.append(f"{item} {values[item]}")
        self.send(b"* STATUS " + self._wire_name(folder.name) + f" ({' '.join(out)})".encode())
        self.tagged(tag, "OK", "STATUS completed")

    async def cmd_append(self, tag: str, args: list[Token]) -> None:
        if len(args) < 2 or len(args) > 4:
            raise Bad("APPEND expects a mailbox, optional flags and date, and a message literal")
        assert self.store is not None
        data = args[-1]
        if not isinstance(data, bytes):
            raise Bad("APPEND message must be a literal")
        flags: list[str] = []
        when: int | None = None
        for extra in args[1:-1]:
            if isinstance(extra, list):
                flags = self._parse_flags(extra)
            else:
                when = parse_imap_datetime(as_text(extra, "date-time"))
        if len(data) > self.hooks.max_append:
            raise No("message too large", "TOOBIG")
        if not data:
            raise No("empty message")
        folder = self.store.folder(self._folder_name(args[0]))
        if folder is None:
            raise No("no such mailbox; create it first", "TRYCREATE")
        loop = asyncio.get_running_loop()
        store = self.store
        # The file (and its fsyncs) in a thread; the index on this thread: the SQLite
        # connection is shared by this process's sessions of the user and is not thread-safe.
        written = await loop.run_in_executor(None, store.write_message, folder, data)
        uid = store.add_written(folder, written, flags, when)
        await self._notify(True)
        self.tagged(tag, "OK", "APPEND completed", f"APPENDUID {folder.uidvalidity} {uid}")

    async def cmd_idle(self, tag: str, args: list[Token]) -> None:
        _no_args(args)
        self.io.send(b"+ idling\r\n")
        deadline = time.monotonic() + IDLE_TIMEOUT
        while True:
            await self._notify(True)
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

    # --- selected ------------------------------------------------------------------------

    async def cmd_check(self, tag: str, args: list[Token]) -> None:
        _no_args(args)
        await self._notify(True)
        self.tagged(tag, "OK", "CHECK completed")

    async def cmd_close(self, tag: str, args: list[Token]) -> None:
        _no_args(args)
        sel = self.selected
        assert sel is not None and self.store is not None
        if not sel.readonly:
            self.store.expunge(sel.folder)
        self.selected = None
        self.tagged(tag, "OK", "CLOSE completed")

    async def cmd_unselect(self, tag: str, args: list[Token]) -> None:
        _no_args(args)
        self.selected = None
        self.tagged(tag, "OK", "UNSELECT completed")

    async def cmd_expunge(self, tag: str, args: list[Token], uid_set: str | None = None) -> None:
        if uid_set is None:
            _no_args(args)
        sel = self.selected
        assert sel is not None and self.store is not None
        if sel.readonly:
            raise No("mailbox is read-only", "READ-ONLY")
        within = None
        if uid_set is not None:
            within = self._resolve(uid_set, uid=True)
        removed = self.store.expunge(sel.folder, within)
        await self._notify(True)
        self._report_expunged(removed)
        self.tagged(tag, "OK", "EXPUNGE completed")

    def _report_expunged(self, uids: list[int]) -> None:
        sel = self.selected
        assert sel is not None
        seqs = sorted((s for s in (sel.seq_of(u) for u in uids) if s), reverse=True)
        if not seqs:
            return
        gone = set(uids)
        for s in seqs:
            self.untagged(f"{s} EXPUNGE")
        sel.uids = [u for u in sel.uids if u not in gone]
        sel.recent -= gone
        for u in gone:
            sel.flags.pop(u, None)

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

    def _resolve(self, text: str, uid: bool) -> list[int]:
        """A sequence set (or UID set) -> the UIDs it names in this session, ascending."""
        sel = self.selected
        assert sel is not None
        ranges = parse_sequence_set(text)
        if ranges is None:
            raise Bad(f"invalid {'UID' if uid else 'sequence'} set {text[:40]}")
        uids = sel.uids
        out: set[int] = set()
        if uid:
            largest = uids[-1] if uids else 0
            for lo, hi in ranges:
                lo = lo or largest
                hi = hi or largest
                if lo > hi:
                    lo, hi = hi, lo
                i = bisect.bisect_left(uids, lo)
                j = bisect.bisect_right(uids, hi)
                out.update(uids[i:j])
        else:
            n = len(uids)
            for lo, hi in ranges:
                lo = lo or n
                hi = hi or n
                if lo > hi:
                    lo, hi = hi, lo
                if hi > n or lo < 1:
                    raise Bad(f"invalid sequence set: message {hi} does not exist ({n} exist)")
                out.update(uids[lo - 1 : hi])
        return sorted(out)

    async def cmd_fetch(self, tag: str, args: list[Token], uid: bool = False) -> None:
        if len(args) not in (2, 3):
            raise Bad("FETCH expects a sequence set and data items")
        sel = self.selected
        assert sel is not None and self.store is not None
        set_text = as_atom(args[0], "sequence set")
        items = self._fetch_items(args[1])
        changedsince = None
        if len(args) == 3:
            mods = as_list(args[2], "fetch modifiers")
            if len(mods) != 2 or str(mods[0]).upper() != "CHANGEDSINCE":
                raise Bad("unsupported FETCH modifier")
            changedsince = as_number(mods[1], "CHANGEDSINCE")
            self.condstore = True
        uids = self._resolve(set_text, uid)
        names = {i.name for i in items}
        if uid:
            names.add("UID")
            if "UID" not in {i.name for i in items}:
                items.insert(0, FetchItem("UID", label="UID"))
        if changedsince is not None and "MODSEQ" not in names:
            items.append(FetchItem("MODSEQ", label="MODSEQ"))
        gone = 0
        if names <= {"FLAGS", "UID"} and changedsince is None:
            self._fetch_flags(uids, [i.name for i in items])
        else:
            gone = await self._fetch(uids, items, changedsince)
        await self._notify(uid)
        if gone and not uid:
            # RFC 5530: messages another session expunged meanwhile (their EXPUNGE is pending)
            self.tagged(tag, "NO", "some of the requested messages no longer exist",
                        "EXPUNGEISSUED")
            return
        self.tagged(tag, "OK", f"{'UID ' if uid else ''}FETCH completed")

    def _fetch_items(self, tok: Token) -> list[FetchItem]:
        if isinstance(tok, Atom) and tok.upper() in FETCH_MACROS:
            return [FetchItem(n, label=n) for n in FETCH_MACROS[tok.upper()]]
        toks = tok if isinstance(tok, list) else [tok]
        if not toks:
            raise Bad("FETCH needs at least one data item")
        out = []
        for t in toks:
            out.append(parse_fetch_item(as_atom(t, "fetch attribute")))
        return out

    async def _fetch(
        self, uids: list[int], items: list[FetchItem], changedsince: int | None
    ) -> int:
        """Send the FETCH responses; returns how many messages no longer exist."""
        sel = self.selected
        store = self.store
        assert sel is not None and store is not None
        folder = sel.folder
        infos = store.infos(folder, uids)
        names = {i.name for i in items}
        need_file = bool(names & {"BODY[]", "RFC822", "RFC822.HEADER", "RFC822.TEXT"})
        need_cache = bool(names & {"ENVELOPE", "BODYSTRUCTURE", "BODY"})
        sets_seen = not sel.readonly and any(
            (i.name == "BODY[]" and not i.peek) or i.name in ("RFC822", "RFC822.TEXT")
            for i in items
        )
        reads_content = bool(names & {"BODY[]", "RFC822", "RFC822.TEXT"})
        new_cache: list[tuple[int, bytes, bytes]] = []
        read_uids: list[int] = []
        seen_now: dict[int, tuple[tuple[str, ...], int]] = {}
        cache = store.cached(folder, list(infos)) if need_cache else {}
        if sets_seen:  # one transaction for the whole FETCH, not one per message
            unseen = [u for u, i in infos.items() if "\\Seen" not in i.flags]
            changed, _ = store.store_flags(folder, unseen, ["\\Seen"], "+")
            for u, f, m in changed:
                seen_now[u] = (f, m)
                sel.own[u] = m
                sel.set_flags(u, f)
        for u in uids:
            info = infos.get(u)
            if info is None:
                continue
            if changedsince is not None and info.modseq <= changedsince:
                continue
            seq = sel.seq_of(u)
            flags = info.flags
            modseq = info.modseq
            flags_changed = u in seen_now
            if flags_changed:
                flags, modseq = seen_now[u]
            data: bytes | None = None
            root: mime.Part | None = None
            env = bs = None
            if need_file:
                data = await self._read(folder, info)
            if need_cache:
                env, bs = cache.get(u, (None, None))
                if env is None or bs is None or "BODY" in names:
                    if data is None:
                        data = await self._read(folder, info)
                    root = await _parse(data)
                    env = mime.envelope(root)
                    bs = mime.bodystructure(root)
                    new_cache.append((u, env, bs))
            if reads_content:
                read_uids.append(u)
            parts: list[bytes] = []
            for item in items:
                n = item.name
                if n == "FLAGS":
                    parts.append(b"FLAGS " + self._flags_of(sel, u, flags))
                elif n == "UID":
                    parts.append(b"UID %d" % u)
                elif n == "INTERNALDATE":
                    parts.append(b"INTERNALDATE " + imap_date(info.internaldate))
                elif n == "RFC822.SIZE":
                    parts.append(b"RFC822.SIZE %d" % info.size)
                elif n == "MODSEQ":
                    parts.append(b"MODSEQ (%d)" % modseq)
                elif n == "ENVELOPE":
                    assert env is not None
                    parts.append(b"ENVELOPE " + env)
                elif n == "BODYSTRUCTURE":
                    assert bs is not None
                    parts.append(b"BODYSTRUCTURE " + bs)
                elif n == "BODY":
                    assert root is not None
                    parts.append(b"BODY " + mime.bodystructure(root, extensible=False))
                elif n == "RFC822":
                    assert data is not None
                    parts.append(b"RFC822 " + mime.string(data))
                elif n == "RFC822.HEADER":
                    assert data is not None
                    parts.append(b"RFC822.HEADER " + mime.string(mime.split_message(data)[0]))
                elif n == "RFC822.TEXT":
                    assert data is not None
                    parts.append(b"RFC822.TEXT " + mime.string(mime.split_message(data)[1]))
                elif n == "BODY[]":
                    assert data is not None and item.section is not None
                    if item.section.path and root is None:
                        root = await _parse(data)
                    value = mime.section_bytes(data, root, item.section)
                    label = item.label.encode()
                    if item.partial:
                        start, count = item.partial
                        value = value[start : start + count]
                        label += b"<%d>" % start
                    parts.append(label + b" " + literal(value))
            if flags_changed and "FLAGS" not in names:
                parts.append(b"FLAGS " + self._flags_of(sel, u, flags))
            if "FLAGS" in names or flags_changed:
                self._announce(flags)
            if self.condstore and flags_changed and "MODSEQ" not in names:
                parts.append(b"MODSEQ (%d)" % modseq)
            self.io.send(b"* %d FETCH (" % seq + b" ".join(parts) + b")\r\n")
            if data is not None and len(data) > 65536:
                await self.io.flush()
        if new_cache:
            store.set_cached(folder, new_cache)
        if read_uids:
            self._audit("imap.read", {"folder": folder.name, "uids": seq_set(read_uids)})
        return len(uids) - len(infos)

    def _fetch_flags(self, uids: list[int], names: list[str]) -> None:
        """FETCH of FLAGS and UID only: from the session's view, without the index (the
        common "what changed" poll of every client, and SELECT + FETCH 1:* FLAGS)."""
        sel = self.selected
        assert sel is not None
        memo: dict[str, bytes] = {}
        flags, recent, all_uids = sel.flags, sel.recent, sel.uids
        uid_first = names == ["UID", "FLAGS"]  # UID FETCH n:* FLAGS, the usual poll
        flags_only = names == ["FLAGS"]
        out: list[bytes] = []
        j = bisect.bisect_left(all_uids, uids[0]) if uids else 0
        for u in uids:
            while all_uids[j] != u:
                j += 1
            text = flags.get(u, "")
            if u in recent:
                text = f"{text} \\Recent" if text else "\\Recent"
            fb = memo.get(text)
            if fb is None:
                fb = memo[text] = b"FLAGS (" + text.encode() + b")"
                if out and any(not w.startswith("\\") for w in text.split()):
                    self.io.send(b"".join(out))  # keep the order: FLAGS before the FETCH
                    out.clear()
                self._announce(text)
            if uid_first:
                out.append(b"* %d FETCH (UID %d %s)\r\n" % (j + 1, u, fb))
            elif flags_only:
                out.append(b"* %d FETCH (%s)\r\n" % (j + 1, fb))
            else:
                parts = [fb if n == "FLAGS" else b"UID %d" % u for n in names]
                out.append(b"* %d FETCH (%s)\r\n" % (j + 1, b" ".join(parts)))
        self.io.send(b"".join(out))

    def _send_flags(self, sel: Selected) -> None:
        flags = " ".join([*SYSTEM_FLAGS, *sorted(sel.keywords)])
        self.untagged(f"FLAGS ({flags})")
        if sel.readonly:
            self.untagged("OK [PERMANENTFLAGS ()] read-only mailbox")
        else:
            self.untagged(f"OK [PERMANENTFLAGS ({flags} \\*)] flags permitted")

    def _announce(self, flags: str | tuple[str, ...]) -> None:
        """Before a FETCH shows a keyword the client has not seen in FLAGS, send a new FLAGS
        (RFC 3501 7.2.6: FLAGS lists the flags the mailbox uses)."""
        sel = self.selected
        assert sel is not None
        words = flags.split() if isinstance(flags, str) else flags
        new = {w for w in words if not w.startswith("\\")} - sel.keywords
        if new:
            sel.keywords |= new
            self._send_flags(sel)

    def _flags_of(self, sel: Selected, uid: int, flags: tuple[str, ...]) -> bytes:
        if uid in sel.recent:
            return flag_list((*flags, "\\Recent"))
        return flag_list(flags)

    async def _read(self, folder: Folder, info: MessageInfo) -> bytes:
        assert self.store is not None
        if info.size > 1024 * 1024:
            data = await asyncio.get_running_loop().run_in_executor(
                None, self.store.read_file, folder, info.base
            )
            if data is not None:
                return data
        return self.store.read(folder, info.base)

    def _parse_flags(self, toks: list[Token]) -> list[str]:
        flags = []
        for t in toks:
            f = as_atom(t, "flag")
            if f.startswith("\\"):
                canon = _SYSTEM_LOWER.get(f.lower())
                if canon is None:
                    if f.lower() == "\\recent":
                        raise Bad("\\Recent cannot be set by clients")
                    raise Bad(f"unknown system flag {f[:30]}")
                flags.append(canon)
            else:
                if not f or any(c in f for c in '(){%*"\\]') or len(f) > 100:
                    raise Bad(f"invalid keyword {f[:30]}")
                flags.append(f)
        return flags

    async def cmd_store(self, tag: str, args: list[Token], uid: bool = False) -> None:
        if len(args) < 3:
            raise Bad("STORE expects a sequence set, an action and flags")
        sel = self.selected
        assert sel is not None and self.store is not None
        set_text = as_atom(args[0], "sequence set")
        pos = 1
        unchangedsince = None
        if isinstance(args[1], list):
            mods = args[1]
            if len(mods) != 2 or str(mods[0]).upper() != "UNCHANGEDSINCE":
                raise Bad("unsupported STORE modifier")
            unchangedsince = as_number(mods[1], "UNCHANGEDSINCE")
            self.condstore = True
            pos = 2
        if len(args) < pos + 2:
            raise Bad("STORE expects an action and flags")
        action = as_atom(args[pos], "STORE action").upper()
        silent = action.endswith(".SILENT")
        base = action.removesuffix(".SILENT")
        if base not in ("FLAGS", "+FLAGS", "-FLAGS"):
            raise Bad(f"unknown STORE action {action[:20]}")
        rest = args[pos + 1 :]
        toks = rest[0] if len(rest) == 1 and isinstance(rest[0], list) else rest
        flags = self._parse_flags(toks)  # type: ignore[arg-type]
        uids = self._resolve(set_text, uid)
        if sel.readonly:
            raise No("mailbox is read-only", "READ-ONLY")
        mode = base[0] if base[0] in "+-" else ""
        changed, failed = self.store.store_flags(sel.folder, uids, flags, mode, unchangedsince)
        for u, f, m in changed:
            sel.own[u] = m
            sel.set_flags(u, f)
        self._announce(tuple(flags))
        done = {u for u, _, _ in changed}
        # RFC 7162 3.2: with CONDSTORE, changed messages are reported (with MODSEQ) even
        # under .SILENT.
        report = not silent or self.condstore
        infos = self.store.infos(sel.folder, uids) if report else {}
        for u in uids:
            info = infos.get(u)
            if info is None or u in failed:
                continue
            if silent and u not in done:
                continue
            parts = []
            if uid:
                parts.append(b"UID %d" % u)
            if not silent:
                parts.append(b"FLAGS " + self._flags_of(sel, u, info.flags))
            if self.condstore:
                parts.append(b"MODSEQ (%d)" % info.modseq)
            self.io.send(b"* %d FETCH (" % sel.seq_of(u) + b" ".join(parts) + b")\r\n")
        await self._notify(uid)
        code = None
        if failed:
            numbers = failed if uid else [sel.seq_of(u) for u in failed]
            code = f"MODIFIED {seq_set(numbers)}"
        self.tagged(tag, "OK", f"{'UID ' if uid else ''}STORE completed", code)

    async def cmd_search(self, tag: str, args: list[Token], uid: bool = False) -> None:
        sel = self.selected
        assert sel is not None and self.store is not None
        if args and isinstance(args[0], Atom) and args[0].upper() == "RETURN":
            raise Bad("ESEARCH (SEARCH RETURN) is not supported")
        try:
            _, keys = parse_search(args)
        except BadCharset:
            raise No("unsupported charset", "BADCHARSET (US-ASCII UTF-8)") from None
        store = self.store
        folder = sel.folder
        infos = store.infos(folder, sel.uids)
        largest_uid = sel.uids[-1] if sel.uids else 0
        found: list[tuple[int, int, int]] = []
        heavy = needs_message(keys)
        for i, u in enumerate(sel.uids):
            info = infos.get(u)
            if info is None:
                continue
            cand = Candidate(
                i + 1, u, info.flags, info.internaldate, info.size, info.modseq, u in sel.recent,
                functools.partial(store.read, folder, info.base),
            )
            if all(matches(k, cand, len(sel.uids), largest_uid) for k in keys):
                found.append((i + 1, u, info.modseq))
            if heavy and i % 200 == 199:
                await asyncio.sleep(0)  # long text searches leave room for other clients
        numbers = [u if uid else s for s, u, _ in found]
        line = "SEARCH" + "".join(f" {n}" for n in numbers)
        if uses_modseq(keys) and found:
            self.condstore = True
            line += f" (MODSEQ {max(m for _, _, m in found)})"
        self.untagged(line)
        if heavy:
            self._audit("imap.search", {"folder": folder.name})
        await self._notify(uid)
        self.tagged(tag, "OK", f"{'UID ' if uid else ''}SEARCH completed")

    async def cmd_copy(self, tag: str, args: list[Token], uid: bool = False,
                       move: bool = False) -> None:
        verb = "MOVE" if move else "COPY"
        if len(args) != 2:
            raise Bad(f"{verb} expects a sequence set and a mailbox name")
        sel = self.selected
        assert sel is not None and self.store is not None
        uids = self._resolve(as_atom(args[0], "sequence set"), uid)
        dst = self.store.folder(self._folder_name(args[1]))
        if dst is None:
            raise No("no such mailbox; create it first", "TRYCREATE")
        if move and sel.readonly:
            raise No("mailbox is read-only", "READ-ONLY")
        pairs = self.store.copy(sel.folder, uids, dst) if uids else []
        code = None
        if pairs:
            code = (
                f"COPYUID {dst.uidvalidity} {seq_set([s for s, _ in pairs])}"
                f" {seq_set([d for _, d in pairs])}"
            )
        prefix = "UID " if uid else ""
        if move:
            if code:
                self.untagged(f"OK [{code}] moved")
            moved = [s for s, _ in pairs]
            self.store.remove(sel.folder, moved)
            self._report_expunged(moved)
            await self._notify(True)
            self.tagged(tag, "OK", f"{prefix}MOVE completed")
            return
        await self._notify(uid)
        self.tagged(tag, "OK", f"{prefix}COPY completed", code)

    async def cmd_move(self, tag: str, args: list[Token], uid: bool = False) -> None:
        await self.cmd_copy(tag, args, uid=uid, move=True)

    # --- change notification -------------------------------------------------------------

    async def _notify(self, allow_expunge: bool) -> None:
        sel = self.selected
        store = self.store
        if sel is None or store is None:
            return
        store.import_new(sel.folder)
        last_uid = sel.uids[-1] if sel.uids else 0
        changes = store.changes_since(sel.folder, sel.modseq, last_uid)
        if changes is None:
            self.untagged("BYE the selected mailbox was deleted or renamed")
            self.selected = None
            self.closing = True
            return
        if changes.name != sel.folder.name:  # renamed (by us or another session): follow it
            sel.folder = dataclasses.replace(sel.folder, name=changes.name)
        if changes.highestmodseq <= sel.modseq:
            return
        present = [u for u in changes.expunged if sel.seq_of(u)]
        if present and not allow_expunge:
            return  # reported after a command that may shift sequence numbers
        if present:
            self._report_expunged(present)
        for u, flags, m in changes.changed:
            seq = sel.seq_of(u)
            if not seq:
                continue
            sel.set_flags(u, flags)
            if sel.own.get(u) == m:
                continue
            self._announce(flags)
            extra = b" MODSEQ (%d)" % m if self.condstore else b""
            self.io.send(
                b"* %d FETCH (UID %d FLAGS " % (seq, u) + self._flags_of(sel, u, flags) + extra
                + b")\r\n"
            )
        sel.own.clear()
        if changes.new:
            for u, text in changes.new:
                sel.uids.append(u)
                if text:
                    sel.flags[u] = text
                    self._announce(text)
            if not sel.readonly:
                sel.recent |= store.claim_recent(sel.folder)
            self.untagged(f"{len(sel.uids)} EXISTS")
            self.untagged(f"{sel.recent_count()} RECENT")
        sel.modseq = changes.highestmodseq

    def _audit(self, action: str, details: dict[str, object]) -> None:
        if self.login is not None and self.login.patient:
            self.hooks.audit(self.login.address, action, self.login.address, details)


async def _parse(data: bytes) -> mime.Part:
    if len(data) > 256 * 1024:  # keep the event loop free while a big message is walked
        return await asyncio.get_running_loop().run_in_executor(None, mime.parse, data)
    return mime.parse(data)


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise Bad("invalid base64 in authentication response") from None


def _no_args(args: list[Token]) -> None:
    if args:
        raise Bad("unexpected arguments")


def _pattern(pattern: str) -> re.Pattern[str]:
    out = []
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "%":
            out.append(f"[^{re.escape(DELIMITER)}]*")
        else:
            out.append(re.escape(ch))
    rx = "".join(out)
    # INBOX is case-insensitive, so is a pattern naming it.
    if pattern.upper().startswith("INBOX"):
        return re.compile(f"(?i:{rx[:5]}){rx[5:]}\\Z", re.S)
    return re.compile(rx + r"\Z", re.S)


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
                  "MOVE", "UID"}

_HANDLERS: dict[str, tuple[tuple[str, ...], Callable[..., Awaitable[None]]]] = {
    "CAPABILITY": (_ANY, Session.cmd_capability),
    "NOOP": (_ANY, Session.cmd_noop),
    "LOGOUT": (_ANY, Session.cmd_logout),
    "ID": (_ANY, Session.cmd_id),
    "STARTTLS": (("noauth",), Session.cmd_starttls),
    "LOGIN": (("noauth",), Session.cmd_login),
    "AUTHENTICATE": (("noauth",), Session.cmd_authenticate),
    "ENABLE": (_AUTHED, Session.cmd_enable),
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
    "COPY": (("selected",), Session.cmd_copy),
    "MOVE": (("selected",), Session.cmd_move),
}
