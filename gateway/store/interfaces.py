"""The storage capability's interfaces: the mail store (each user's folders and messages),
the intake (what an accepted message becomes, stored durably in one commit) and the outbound
queue. Callers (IMAP, SMTP, the queue runner, the CLI) use these; the root
(`gateway.runtime`) builds the implementations: Maildir++ with a per-user SQLite index
(`mailstore.py`), Maildir delivery through the group commit (`commit.py`) and the queue's
files (`queue.py`) on the embedded default.

The value types (Folder, MessageInfo, Changes, FolderView) are the same for every
implementation. `MessageInfo.base` names the message's octets in the store (a Maildir file's
base name here; a body's key elsewhere): callers only hand it back to `read`/`read_file`.

Threads: a `MailStore` belongs to the event loop of the process that acquired it; the methods
documented "blocking, in a worker thread" are the ones the IMAP sessions run off the loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.store.queue import Entry, Record
from gateway.store.sortkeys import SortKeys

DELIMITER = "/"  # the IMAP hierarchy delimiter of every store


class StoreError(Exception):
    """A refused folder operation; the text is shown to the user (IMAP NO)."""

    def __init__(self, text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.code = code


@dataclass(frozen=True)
class Folder:
    id: int
    name: str
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    subscribed: bool
    special_use: str | None
    keywords: tuple[str, ...]


@dataclass(frozen=True)
class MessageInfo:
    uid: int
    flags: tuple[str, ...]
    modseq: int
    internaldate: int
    size: int
    base: str
    tz: int = 0  # the INTERNALDATE's zone, minutes east of UTC (as APPENDed, else local)


@dataclass(frozen=True)
class Appended:
    """One message of an APPEND: its octets, flags, INTERNALDATE and zone (None: now, the
    server's), and whether its octets are kept as sent (a literal8)."""

    data: bytes
    flags: tuple[str, ...] = ()
    internaldate: int | None = None
    tz: int | None = None
    verbatim: bool = False


@dataclass(frozen=True)
class Changes:
    highestmodseq: int
    new: list[tuple[int, str]]  # uid, flags (space-separated) of messages above last_uid
    changed: list[tuple[int, tuple[str, ...], int]]  # uid, flags, modseq
    expunged: list[int]
    name: str = ""  # the folder's name now (a RENAME keeps its id and UIDVALIDITY)

    @property
    def new_uids(self) -> list[int]:
        return [u for u, _ in self.new]


@dataclass
class FolderView:
    """A folder's UIDs and flags at `modseq`: what SELECT needs, without a row per message
    through Python each time. Flags are the index's space-separated text; only non-empty
    ones are kept."""

    uidvalidity: int
    modseq: int
    uids: list[int]
    flags: dict[int, str]

    def copy(self) -> FolderView:
        return FolderView(self.uidvalidity, self.modseq, list(self.uids), dict(self.flags))

    def apply(self, changes: Changes) -> None:
        if changes.expunged:
            gone = set(changes.expunged)
            self.uids = [u for u in self.uids if u not in gone]
            for u in gone:
                self.flags.pop(u, None)
        for u, text in changes.new:
            self.uids.append(u)
            if text:
                self.flags[u] = text
        for u, flags, _ in changes.changed:
            if flags:
                self.flags[u] = " ".join(flags)
            else:
                self.flags.pop(u, None)
        self.modseq = changes.highestmodseq


class MailStore(Protocol):
    """One user's folders and messages: UIDs, flags and keywords, MODSEQ, subscriptions, and
    the changes other sessions (in this process or another, on this node or another) made."""

    # --- folders ------------------------------------------------------------------------
    def folder(self, name: str) -> Folder | None: ...

    def folder_by_id(self, folder_id: int) -> Folder | None: ...

    def folders(self) -> list[Folder]: ...

    def create_folder(self, name: str) -> None:
        """Create `name` and its missing parents (StoreError ALREADYEXISTS, LIMIT, CANNOT)."""
        ...

    def delete_folder(self, name: str) -> None:
        """Delete an empty-of-children folder and its messages (its subscription stays)."""
        ...

    def rename_folder(self, old: str, new: str) -> None:
        """Rename with its children and subscriptions; INBOX's messages move to `new`."""
        ...

    def subscribe(self, name: str, on: bool) -> None: ...

    def subscriptions(self) -> set[str]:
        """Subscribed names, folders that no longer exist included."""
        ...

    # --- messages -----------------------------------------------------------------------
    def arrivals(self, folder: Folder) -> list[str]:
        """Deliveries waiting to be indexed in `folder` (cheap: called on the event loop after
        every command); [] when there are none, or when delivery indexes them itself."""
        ...

    def adopt(self, folder: Folder, names: list[str]) -> bool:
        """Index `names` from `arrivals` durably, giving each the next UID; True when some were
        added. Blocking, in a worker thread."""
        ...

    def append(
        self, folder: Folder, data: bytes, flags: Iterable[str], internaldate: int | None = None,
        tz: int | None = None, verbatim: bool = False,
    ) -> int:
        """Durably add a message and return its UID (StoreError TRYCREATE when the folder is
        gone). `tz`: the date's zone, minutes east of UTC; `verbatim`: keep the octets (else
        line ends become CRLF). Blocking, in a worker thread."""
        ...

    def append_many(self, folder: Folder, messages: Sequence[Appended]) -> list[int]:
        """Add several messages at once, all or none (MULTIAPPEND, RFC 3502), with consecutive
        UIDs (returned in order). Blocking, in a worker thread."""
        ...

    def usage(self) -> int:
        """Octets the user's mail takes (QUOTA's STORAGE), deliveries not yet indexed
        included."""
        ...

    def copy(self, src: Folder, uids: Sequence[int], dst: Folder) -> list[tuple[int, int]]:
        """Durably copy messages; [(source uid, new uid)] of those still there."""
        ...

    def read_file(self, folder: Folder, base: str) -> bytes | None:
        """The message's octets, or None when it is not where `folder` says (a rename or an
        expunge by another session). Safe in a worker thread."""
        ...

    def read(self, folder: Folder, base: str) -> bytes:
        """The message's octets, following a rename; b"" once expunged elsewhere."""
        ...

    def counts(self, folder: Folder) -> tuple[int, int, int]:
        """(messages, unseen, recent)."""
        ...

    def status_sizes(self, folder: Folder) -> tuple[int, int]:
        """(messages marked \\Deleted, octets of the folder's messages): STATUS DELETED and
        SIZE (RFC 9051, RFC 8438)."""
        ...

    def peek_recent(self, folder: Folder) -> set[int]:
        """The \\Recent UIDs nobody claimed yet, left in place (EXAMINE)."""
        ...

    def claim_recent(self, folder: Folder) -> set[int]:
        """Take the \\Recent marks: the session that claims them shows them."""
        ...

    def infos(self, folder: Folder, uids: Sequence[int]) -> dict[int, MessageInfo]: ...

    def sort_keys(self, folder: Folder, uids: Sequence[int]) -> dict[int, SortKeys]:
        """What SORT and THREAD compare (gateway.store.sortkeys) for each of `uids` still in
        the folder, kept from each message's header when it entered the store."""
        ...

    def sort_values(self, folder: Folder, uids: Sequence[int], key: str) -> dict[int, Any]:
        """One sort key of each of `uids` still in the folder, so SORT reads only what its
        criteria name: `key` is a SortKeys field (sent, subject, from_addr, to_addr, cc_addr,
        display_from, display_to) or "internaldate" / "size" (ARRIVAL, SIZE); the values
        compare as the SORT collation wants (strings already casemapped)."""
        ...

    def thread_keys(
        self, folder: Folder, uids: Sequence[int]
    ) -> dict[int, tuple[int, int, str, int, str, str]]:
        """What THREAD=REFERENCES reads of each of `uids` still in the folder, as one row:
        (uid, sent, subject, reply (0 or 1), message_id, the references joined by spaces),
        the SortKeys fields as `sort_values` gives them."""
        ...

    def cached(
        self, folder: Folder, uids: Sequence[int]
    ) -> dict[int, tuple[bytes | None, bytes | None]]:
        """The (ENVELOPE, BODYSTRUCTURE) kept for each message (None: not computed yet)."""
        ...

    def set_cached(self, folder: Folder, items: list[tuple[int, bytes, bytes]]) -> None:
        """Keep (uid, ENVELOPE, BODYSTRUCTURE): a cache, no MODSEQ change."""
        ...

    def store_flags(
        self,
        folder: Folder,
        uids: Sequence[int],
        flags: Iterable[str],
        mode: str,
        unchangedsince: int | None = None,
    ) -> tuple[list[tuple[int, tuple[str, ...], int]], list[int]]:
        """mode "+", "-" or "" (replace). (changed [(uid, flags, modseq)], UIDs refused
        because their MODSEQ is above `unchangedsince`, CONDSTORE)."""
        ...

    def expunge(self, folder: Folder, uids: Sequence[int] | None = None) -> list[int]:
        """Remove the \\Deleted messages (only among `uids` when given); the UIDs removed."""
        ...

    def remove(self, folder: Folder, uids: Sequence[int]) -> None:
        """Expunge exactly `uids` whatever their flags (the second half of MOVE)."""
        ...

    # --- what changed ---------------------------------------------------------------------
    def changes_since(self, folder: Folder, modseq: int, last_uid: int) -> Changes | None:
        """New UIDs above `last_uid`, flag changes and expunges after `modseq`, read at one
        instant. None when the folder is gone (deleted, or re-created)."""
        ...

    def vanished_since(
        self, folder: Folder, modseq: int, within: Sequence[tuple[int, int]] | None = None
    ) -> list[tuple[int, int]]:
        """UID ranges expunged after `modseq`, inside `within` (0 for "*"): QRESYNC's
        VANISHED (EARLIER); a superset when the records were pruned."""
        ...

    def view(self, folder: Folder) -> FolderView:
        """The folder's UIDs and flags now (a private copy, cheap to take again)."""
        ...

    def cleanup(self) -> Callable[[], None] | None:
        """Work left by the last changes that must not run on the event loop (unlinking the
        files of expunged messages), to run in a worker thread; None when there is none."""
        ...

    def close(self) -> None: ...


class MailStores(Protocol):
    """The process's open stores, one per user, shared by that user's sessions."""

    def acquire(self, address: str) -> MailStore: ...

    def release(self, address: str) -> None: ...

    def usage(self, address: str) -> int:
        """Octets the user's mail takes (QUOTA's STORAGE), deliveries not yet indexed
        included. Cheap (SMTP asks before accepting mail), and opens or creates nothing."""
        ...

    def rest_idle(self, idle_for: float) -> Callable[[], None] | None:
        """Free what stores unused for `idle_for` seconds hold (sessions still logged in
        included; it comes back at their next use). Returns the slow part, for the caller to
        run in a worker thread, or None. Called every few seconds by each worker."""
        ...

    def close(self) -> None: ...


class Intake(Protocol):
    """What an accepted message becomes, stored durably in one commit: a copy for each local
    recipient (`(address, octets)`: the recipient's INBOX), the outbound queue's entries, and
    the message's `note` (the SMTP gateway's conversations with patients: `Contact`). When
    `commit` returns everything is durable; when it raises, nothing of it is visible."""

    async def commit(
        self, local: Sequence[tuple[str, bytes]], queued: Sequence[Entry] = (),
        note: object | None = None,
    ) -> None: ...

    def store(self, local: Sequence[tuple[str, bytes]], queued: Sequence[Entry] = ()) -> None:
        """The same for one message, blocking, in a worker thread (the queue runner's DSNs)."""
        ...

    def close(self) -> None: ...


class OutboundQueue(Protocol):
    """Mail for other operators of the trust space, and DSNs, until each recipient is done.
    Entries are added through the `Intake`; a runner or an administrator works on one entry at
    a time under its lock (`locked`), which another gateway sharing the queue respects."""

    def ids(self) -> list[str]:
        """Every entry's id, oldest first."""
        ...

    def records(self) -> list[Record]: ...

    def load(self, queue_id: str) -> Record:
        """The entry (NotFound when it is gone; QueueError for a malformed id)."""
        ...

    def message(self, queue_id: str) -> bytes: ...

    def save(self, record: Record) -> None:
        """Replace the entry's record durably (its states per recipient)."""
        ...

    def remove(self, queue_id: str) -> None: ...

    def locked(self, queue_id: str, *, wait: float | None = None) -> AbstractContextManager[bool]:
        """Hold the entry's lock; yields False when it is held elsewhere (after `wait`
        seconds, or at once) or when the entry is gone."""
        ...

    def sweep(self, older_than: float = 3600.0) -> int:
        """Remove what crashes left behind; how many pieces."""
        ...


__all__ = [
    "DELIMITER",
    "Appended",
    "Changes",
    "Entry",
    "Folder",
    "FolderView",
    "Intake",
    "MailStore",
    "MailStores",
    "MessageInfo",
    "OutboundQueue",
    "Record",
    "StoreError",
]
