"""What every part of an IMAP session shares: the connection it writes to (`Channel`), the
hooks the service plugs in, the selected mailbox's view (`Selected`), the tagged-status
exceptions, and `SessionState`, the base holding one connection's state and its writers.
"""

from __future__ import annotations

import asyncio
import bisect
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from gateway.imap import utf7
from gateway.imap.parser import Token, as_atom, as_text
from gateway.imap.syntax import quote
from gateway.oidc.sasl import BearerResponse
from gateway.store.interfaces import Folder, MailStore, MailStores

if TYPE_CHECKING:
    from gateway.imap.contexts import Context

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
_SYSTEM_LOWER = {f.lower(): f for f in SYSTEM_FLAGS}
BASE_CAPS = (
    "IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE UIDPLUS MOVE SPECIAL-USE"
    " CONDSTORE UNSELECT CHILDREN ESEARCH BINARY LIST-EXTENDED LIST-STATUS QRESYNC SORT"
    " SORT=DISPLAY ESORT THREAD=ORDEREDSUBJECT THREAD=REFERENCES WITHIN SEARCHRES MULTIAPPEND QUOTA"
    " CATENATE CONTEXT=SEARCH CONTEXT=SORT NOTIFY"
    " QUOTA=RES-STORAGE STATUS=SIZE"
)
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
    quota: int = 0  # octets the mailbox may hold ([quota] for its kind); 0: no limit


class AuthFailed(Exception):
    """Refused login; `code` is the IMAP response code (AUTHENTICATIONFAILED, ...);
    `challenge` the SASL error sent before the NO (RFC 7628 token logins)."""

    def __init__(
        self, text: str, code: str = "AUTHENTICATIONFAILED", challenge: bytes | None = None
    ) -> None:
        super().__init__(text)
        self.code = code
        self.challenge = challenge


@dataclass
class Hooks:
    """What the service plugs in: authentication, the audit log, limits."""

    pool: MailStores
    # (address, password, client ip) -> Login, or raises AuthFailed
    authenticate: Callable[[str, str, str], Awaitable[Login]]
    # (session's TLS peer info, authorisation id or "") -> Login, or raises AuthFailed
    authenticate_certificate: Callable[[object, str], Awaitable[Login]] | None = None
    # (OAUTHBEARER/XOAUTH2 message, client ip) -> Login, or raises AuthFailed; None: not offered
    authenticate_token: Callable[[BearerResponse, str], Awaitable[Login]] | None = None
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
    saved: frozenset[int] = frozenset()  # SEARCHRES "$": UIDs of the last SEARCH ... (SAVE)
    # RFC 5267 searches kept current, by tag (closing the mailbox ends them)
    contexts: dict[str, Context] = field(default_factory=dict)

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


class SessionState:
    """One connection's state and the helpers every command group uses."""

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
        self.qresync = False  # ENABLE QRESYNC: VANISHED replaces EXPUNGE (RFC 7162 3.2)
        # ENABLE IMAP4rev2 (RFC 9051 Appendix E): no \Recent nor RECENT, SEARCH answers
        # ESEARCH, SELECT sends LIST and no UNSEEN, mailbox names travel in UTF-8.
        self.rev2 = False
        self.denormalized: str | None = None  # the last non-NFC name a rev2 client gave
        # NOTIFY (RFC 5465, notify.py): the events wanted for the selected mailbox (upper-case
        # names); None until the client sends NOTIFY, when the base rules of IMAP apply.
        self.notify_selected: frozenset[str] | None = None
        self.notify_immediate = False  # SELECTED: expunges told at once, not held for a command
        self.failures = 0
        self.want_starttls = False
        self.want_compress = False  # COMPRESS DEFLATE answered: the connection switches
        self.compressed = False
        self.closing = False

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
                if self.hooks.authenticate_token is not None:
                    caps += " AUTH=OAUTHBEARER AUTH=XOAUTH2"
        elif not self.compressed:
            caps += " COMPRESS=DEFLATE"
        return caps

    def _has_cert(self) -> bool:
        getpeercert = getattr(self.tls_info, "getpeercert", None)
        return bool(getpeercert and getpeercert(binary_form=True))

    def send(self, line: bytes) -> None:
        self.io.send(line + b"\r\n")

    def untagged(self, text: str) -> None:
        self.io.send(b"* " + text.encode() + b"\r\n")

    def tagged(self, tag: str, status: str, text: str, code: str | None = None) -> None:
        c = f"[{code}] " if code else ""
        self.io.send(f"{tag} {status} {c}{text}\r\n".encode())

    def _folder_name(self, tok: Token) -> str:
        text = as_text(tok, "mailbox name")
        if self.rev2:  # RFC 9051 5.1: UTF-8 names (Net-Unicode: NFC), no modified UTF-7
            name = unicodedata.normalize("NFC", text)
            if name != text:
                self.denormalized = text  # SELECT and CREATE tell it back as OLDNAME
            return "INBOX" if name.upper() == "INBOX" else name
        try:
            name = utf7.decode(text)
        except ValueError as exc:
            # A well-formed astring naming no mailbox we could have: refused (NO), as Dovecot
            # does, not a syntax error (BAD).
            raise No(f"invalid mailbox name: {exc}", "CANNOT") from None
        return "INBOX" if name.upper() == "INBOX" else name

    def _wire_name(self, name: str) -> bytes:
        return quote(name if self.rev2 else utf7.encode(name))

    def _get_folder(self, tok: Token) -> Folder:
        assert self.store is not None
        name = self._folder_name(tok)
        folder = self.store.folder(name)
        if folder is None:
            raise No(f"no mailbox named {name}", "NONEXISTENT")
        return folder

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

    def _enable_condstore(self) -> None:
        """RFC 7162 3.1: a CONDSTORE-enabling command (FETCH MODSEQ, SEARCH MODSEQ, STORE
        UNCHANGEDSINCE, STATUS HIGHESTMODSEQ, ENABLE) issued with a mailbox selected also
        tells the client the mailbox's HIGHESTMODSEQ."""
        if self.condstore:
            return
        self.condstore = True
        if self.selected is not None:
            self.untagged(f"OK [HIGHESTMODSEQ {self.selected.modseq}] highest mod-sequence")

    def _check_quota(self, adding: int) -> None:
        """Refuse (NO [OVERQUOTA], RFC 9208) what would take the mailbox beyond its quota."""
        assert self.store is not None and self.login is not None
        if self.login.quota and self.store.usage() + adding > self.login.quota:
            raise No(f"over quota: the mailbox may hold {self.login.quota} octets", "OVERQUOTA")

    async def _adopt_new(self, folder: Folder) -> bool:
        """Index the messages delivered into `folder` since the last look (True when there
        were some). The look is a stat on the event loop; reading, fsyncing and committing
        new arrivals runs in a thread."""
        assert self.store is not None
        names = self.store.arrivals(folder)
        if names:
            await asyncio.get_running_loop().run_in_executor(
                None, self.store.adopt, folder, names
            )
        return bool(names)

    async def _audit(self, action: str, details: dict[str, object]) -> None:
        """Record a read of a patient's mailbox before the command is answered. The entry is
        written and fsynced in a worker thread: the event loop (every session of the worker)
        does not wait for the disk."""
        if self.login is not None and self.login.patient:
            address = self.login.address
            await asyncio.get_running_loop().run_in_executor(
                None, self.hooks.audit, address, action, address, details
            )


def _no_args(args: list[Token]) -> None:
    if args:
        raise Bad("unexpected arguments")

