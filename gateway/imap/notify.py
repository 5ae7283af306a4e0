"""NOTIFY (RFC 5465): the client names the mailboxes and the events it wants to hear of, and
the server tells them as they happen, between commands too, without IDLE.

`parse_notify` reads the command into a `Spec` (pure: names are decoded by the caller's
function). `NotifyCommands` keeps it for the session:

- the selected mailbox (`SELECTED`, `SELECTED-DELAYED`): the usual EXISTS / EXPUNGE / FETCH of
  `updates.py`, now also sent while the client is silent (the connection asks `push_interval`
  how long it may wait, then calls `push`); with SELECTED-DELAYED an EXPUNGE still waits for a
  command that allows it. MessageNew's fetch attributes are sent after the EXISTS (never
  setting \\Seen). Without a selected group, nothing unsolicited is said of that mailbox
  (Dovecot and mox read RFC 5465 3.1 the same way);
- other mailboxes: `Watch` keeps what the client was last told of each (the index's folder
  rows: UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ; message and unseen counts when one of those
  moved), the folder names and the subscriptions, and a poll compares: STATUS for MessageNew,
  MessageExpunge and FlagChange, LIST for MailboxName (\\NonExistent when deleted, OLDNAME
  when renamed) and for SubscriptionChange.

Changes are found by comparing the index at each look, not queued, so nothing overflows: a
client that was slow to read gets one STATUS with the latest counts, never a backlog. The
selected mailbox is looked at every `POLL` seconds, as during IDLE; the other folders every
`OTHERS_POLL` seconds (one query on the folder rows, one `stat` of each watched folder's `new/`):
bench_imap's 1,000 idle connections with NOTIFY take 15% of a core (26% when the other folders
were looked at as often as the selected one). NOOP looks at everything at once. Sessions that
never send NOTIFY pay nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.imap.fetch import FetchCommand
from gateway.imap.listing import ListCommands
from gateway.imap.parser import Atom, Token, as_atom, as_list
from gateway.imap.state import Bad, No
from gateway.imap.syntax import FetchItem
from gateway.store.interfaces import DELIMITER, Folder

POLL = 0.5  # seconds between two looks at the selected mailbox while the client is silent
OTHERS_POLL = 2.0  # seconds between two looks at the other folders
MAX_NAMES = 1000  # mailbox names one NOTIFY may list (as many as a user may have folders)

# RFC 5465 6, with their canonical spelling (for BADEVENT). AnnotationChange needs ANNOTATE,
# the metadata events METADATA: neither is offered, so they are refused with BADEVENT.
EVENTS = {e.upper(): e for e in (
    "MessageNew", "MessageExpunge", "FlagChange", "AnnotationChange", "MailboxName",
    "SubscriptionChange", "MailboxMetadataChange", "ServerMetadataChange")}
SUPPORTED = ("MessageNew", "MessageExpunge", "FlagChange", "MailboxName", "SubscriptionChange")
MESSAGE_EVENTS = frozenset({"MESSAGENEW", "MESSAGEEXPUNGE", "FLAGCHANGE", "ANNOTATIONCHANGE"})
SELECTED_FILTERS = ("SELECTED", "SELECTED-DELAYED")
OTHER_FILTERS = ("INBOXES", "PERSONAL", "SUBSCRIBED", "SUBTREE", "MAILBOXES")


@dataclass(frozen=True)
class Group:
    """One event group: a mailbox filter and its events (upper-case; empty: NONE)."""

    filter: str
    names: tuple[str, ...] = ()  # SUBTREE and MAILBOXES
    events: frozenset[str] = frozenset()
    fetch: Token | None = None  # MessageNew's fetch attributes (selected filters only)

    def matches(self, name: str, subscribed: set[str]) -> bool:
        if self.filter == "PERSONAL":
            return True
        if self.filter == "INBOXES":  # what deliveries reach: only INBOX here
            return name == "INBOX"
        if self.filter == "SUBSCRIBED":
            return name in subscribed
        if self.filter == "MAILBOXES":
            return name in self.names
        if self.filter == "SUBTREE":
            return any(name == n or name.startswith(n + DELIMITER) for n in self.names)
        return False


@dataclass(frozen=True)
class Spec:
    groups: tuple[Group, ...]
    status: bool = False  # NOTIFY SET STATUS: a STATUS of each watched mailbox at once

    @property
    def selected(self) -> Group | None:
        return next((g for g in self.groups if g.filter in SELECTED_FILTERS), None)

    @property
    def others(self) -> tuple[Group, ...]:
        return tuple(g for g in self.groups if g.filter not in SELECTED_FILTERS)

    def events_for(self, name: str, subscribed: set[str]) -> frozenset[str]:
        """The events wanted for a mailbox other than the selected one: those of every group
        that matches it, up to the first matching group that says NONE."""
        out: set[str] = set()
        for g in self.others:
            if g.matches(name, subscribed):
                if not g.events:
                    break
                out |= g.events
        return frozenset(out)


def parse_notify(args: list[Token], mailbox: Callable[[Token], str]) -> Spec | None:
    """NOTIFY's arguments -> the Spec (None for NOTIFY NONE). Bad for what the grammar or
    RFC 5465 forbids; No [BADEVENT] for events we do not offer."""
    if not args:
        raise Bad("NOTIFY expects NONE or SET")
    verb = as_atom(args[0], "NOTIFY verb").upper()
    if verb == "NONE":
        if len(args) != 1:
            raise Bad("NOTIFY NONE takes no arguments")
        return None
    if verb != "SET":
        raise Bad("NOTIFY expects NONE or SET")
    rest = args[1:]
    status = bool(rest) and isinstance(rest[0], Atom) and rest[0].upper() == "STATUS"
    if status:
        rest = rest[1:]
    if not rest:
        raise Bad("NOTIFY SET expects at least one event group")
    groups = tuple(_group(g, mailbox) for g in rest)
    if sum(g.filter in SELECTED_FILTERS for g in groups) > 1:
        raise Bad("only one SELECTED or SELECTED-DELAYED event group is allowed")
    if sum(len(g.names) for g in groups) > MAX_NAMES:
        raise No(f"at most {MAX_NAMES} mailbox names", "NOTIFICATIONOVERFLOW")
    unsupported = {e for g in groups for e in g.events} - {e.upper() for e in SUPPORTED}
    if unsupported:
        names = " ".join(EVENTS[e] for e in sorted(unsupported))
        raise No(f"unsupported NOTIFY events: {names}", f"BADEVENT ({' '.join(SUPPORTED)})")
    return Spec(groups, status)


def _group(tok: Token, mailbox: Callable[[Token], str]) -> Group:
    items = as_list(tok, "event group")
    if not items:
        raise Bad("empty event group")
    kind = as_atom(items[0], "mailbox filter").upper()
    pos = 1
    names: tuple[str, ...] = ()
    if kind in ("SUBTREE", "MAILBOXES"):
        if len(items) < 2:
            raise Bad(f"{kind} expects one or more mailbox names")
        one = items[1]
        toks = one if isinstance(one, list) else [one]
        if not toks:
            raise Bad(f"{kind} expects one or more mailbox names")
        names = tuple(mailbox(t) for t in toks)
        pos = 2
    elif kind not in SELECTED_FILTERS and kind not in OTHER_FILTERS:
        raise Bad(f"unknown mailbox filter {kind[:30]}")
    if len(items) != pos + 1:
        raise Bad("an event group is (filter events)")
    spec = items[pos]
    if isinstance(spec, Atom) and spec.upper() == "NONE":
        return Group(kind, names)
    toks = as_list(spec, "events")
    if not toks:
        raise Bad("events are NONE or a non-empty list")
    events: set[str] = set()
    fetch: Token | None = None
    i = 0
    while i < len(toks):
        name = as_atom(toks[i], "event").upper()
        if name not in EVENTS:
            raise Bad(f"unknown event {name[:30]}")
        events.add(name)
        i += 1
        if name == "MESSAGENEW" and i < len(toks) and isinstance(toks[i], list):
            if kind not in SELECTED_FILTERS:
                raise Bad("MessageNew takes fetch attributes only for the selected mailbox")
            fetch = toks[i]
            i += 1
    if ("MESSAGENEW" in events) != ("MESSAGEEXPUNGE" in events):
        raise Bad("MessageNew and MessageExpunge go together (RFC 5465 5)")
    if events & {"FLAGCHANGE", "ANNOTATIONCHANGE"} and "MESSAGENEW" not in events:
        raise Bad("FlagChange needs MessageNew and MessageExpunge (RFC 5465 5)")
    if kind in SELECTED_FILTERS and events - MESSAGE_EVENTS:
        raise Bad("the selected mailbox takes message events only")
    return Group(kind, names, frozenset(events), fetch)


@dataclass
class Seen:
    """What the client was last told of one folder."""

    name: str
    uidvalidity: int
    uidnext: int
    modseq: int
    messages: int = -1  # -1: not counted yet
    unseen: int = 0


@dataclass
class Watch:
    """The state NOTIFY compares the index with, for the mailboxes other than the selected."""

    spec: Spec
    folders: dict[int, Seen] = field(default_factory=dict)
    subscribed: set[str] = field(default_factory=set)
    next_look: float = 0.0  # monotonic time of the next look

    @property
    def wants_subscriptions(self) -> bool:
        """Whether a look must read the subscriptions (else only a LIST it sends does)."""
        return any("SUBSCRIPTIONCHANGE" in g.events or g.filter == "SUBSCRIBED"
                   for g in self.spec.others)


class NotifyCommands(ListCommands, FetchCommand):
    """NOTIFY, and what it sends while the client is silent."""

    watch: Watch | None = None
    notify_fetch: list[FetchItem] | None = None

    async def cmd_notify(self, tag: str, args: list[Token]) -> None:
        assert self.store is not None
        spec = parse_notify(args, self._folder_name)
        fetch = None
        sel = spec.selected if spec else None
        if sel is not None and sel.fetch is not None:
            fetch = self._fetch_items(sel.fetch)
        self.notify_selected = sel.events if sel is not None else frozenset()
        self.notify_immediate = sel is not None and sel.filter == "SELECTED"
        self.notify_fetch = fetch
        # What was held back for the selected mailbox is told now, if the new set asks for it.
        await self._notify(True)
        self.watch = None
        if spec is not None and spec.others:
            self.watch = Watch(spec)
            await self._watch_start(spec.status)
        self.tagged(tag, "OK", "NOTIFY completed")

    def push_interval(self) -> float | None:
        """How long the connection may wait for the client before `push` (None: for ever)."""
        if self.watch is not None or (self.notify_selected and self.selected is not None):
            return POLL
        return None

    async def push(self) -> None:
        """What happened since the last look, told unsolicited (RFC 5465 3)."""
        if self.notify_selected:
            await self._notify(self.notify_immediate)
        await self._watch_poll(force=False)

    async def _announce_new(self, uids: list[int]) -> None:
        """MessageNew (fetch-att): the new messages' attributes after their EXISTS."""
        if self.notify_fetch and uids:
            await self._fetch(uids, self.notify_fetch, None, peek=True)

    async def _idle_poll(self, force: bool = False) -> None:
        """NOOP (`force`: every watched folder now) and each turn of IDLE."""
        await self._notify(True)
        await self._watch_poll(force)

    # --- the other mailboxes -----------------------------------------------------------------

    async def _watch_start(self, status: bool) -> None:
        watch = self.watch
        assert watch is not None and self.store is not None
        watch.subscribed = self.store.subscriptions()
        for folder in self.store.folders():
            events = watch.spec.events_for(folder.name, watch.subscribed)
            if events & MESSAGE_EVENTS and not self._is_selected(folder) \
                    and await self._adopt_new(folder):
                folder = self.store.folder_by_id(folder.id) or folder
            seen = Seen(folder.name, folder.uidvalidity, folder.uidnext, folder.highestmodseq)
            watch.folders[folder.id] = seen
            if events & MESSAGE_EVENTS and not self._is_selected(folder):
                seen.messages, seen.unseen, _ = self.store.counts(folder)
                if status:  # RFC 5465 3.1: each watched mailbox's STATUS before the OK
                    self._send_status(folder, seen, events)

    async def _watch_poll(self, force: bool) -> None:
        watch = self.watch
        store = self.store
        if watch is None or store is None:
            return
        now = time.monotonic()
        if not force and now < watch.next_look:
            return
        watch.next_look = now + OTHERS_POLL
        subscribed = store.subscriptions() if watch.wants_subscriptions else watch.subscribed
        folders = store.folders()
        told: set[str] = set()  # names a LIST was sent for in this look
        for folder in folders:
            events = watch.spec.events_for(folder.name, subscribed)
            if events & {"MESSAGENEW", "MESSAGEEXPUNGE"} and not self._is_selected(folder) \
                    and await self._adopt_new(folder):
                folder = store.folder_by_id(folder.id) or folder
            seen = watch.folders.get(folder.id)
            if seen is None:  # created since the last look
                seen = watch.folders[folder.id] = Seen(
                    folder.name, folder.uidvalidity, folder.uidnext, folder.highestmodseq)
                if "MAILBOXNAME" in events:
                    self._send_list(folder.name, folders, subscribed)
                    told.add(folder.name)
                if events & MESSAGE_EVENTS:
                    seen.messages, seen.unseen, _ = store.counts(folder)
                continue
            if seen.name != folder.name:  # renamed (the folder keeps its id)
                old, seen.name = seen.name, folder.name
                if "MAILBOXNAME" in events | watch.spec.events_for(old, subscribed):
                    self._send_list(folder.name, folders, subscribed, old=old)
                    told |= {old, folder.name}
            self._folder_changed(folder, seen, events)
        present = {f.id for f in folders}
        for fid in [i for i in watch.folders if i not in present]:
            gone = watch.folders.pop(fid)
            if "MAILBOXNAME" in watch.spec.events_for(gone.name, subscribed):
                self._send_list(gone.name, folders, subscribed)
                told.add(gone.name)
        if subscribed != watch.subscribed:
            before, watch.subscribed = watch.subscribed, subscribed
            for name in sorted((subscribed ^ before) - told):
                if "SUBSCRIPTIONCHANGE" in watch.spec.events_for(name, subscribed | before):
                    self._send_list(name, folders, subscribed)

    def _folder_changed(self, folder: Folder, seen: Seen, events: frozenset[str]) -> None:
        if (folder.uidvalidity, folder.uidnext, folder.highestmodseq) == \
                (seen.uidvalidity, seen.uidnext, seen.modseq):
            return
        quiet = self._is_selected(folder) or not events & MESSAGE_EVENTS
        if quiet:  # told by the selected mailbox's own responses, or not wanted
            seen.uidvalidity, seen.uidnext, seen.modseq = \
                folder.uidvalidity, folder.uidnext, folder.highestmodseq
            seen.messages = -1
            return
        assert self.store is not None
        messages, unseen, _ = self.store.counts(folder)
        appended = folder.uidnext > seen.uidnext
        expunged = seen.messages >= 0 and messages < seen.messages + (folder.uidnext - seen.uidnext)
        tell = (
            folder.uidvalidity != seen.uidvalidity
            or (appended and "MESSAGENEW" in events)
            or (expunged and "MESSAGEEXPUNGE" in events)
            or ("FLAGCHANGE" in events and folder.highestmodseq != seen.modseq)
            or (seen.messages < 0 and messages != seen.messages)
        )
        seen.uidvalidity, seen.uidnext, seen.modseq = \
            folder.uidvalidity, folder.uidnext, folder.highestmodseq
        seen.messages, seen.unseen = messages, unseen
        if tell:
            self._send_status(folder, seen, events)

    def _send_status(self, folder: Folder, seen: Seen, events: frozenset[str]) -> None:
        """RFC 5465 5.2-5.3: MESSAGES and UIDNEXT tell arrivals and expunges; with FlagChange
        (or CONDSTORE on), HIGHESTMODSEQ tells flag changes. UNSEEN too, as Dovecot and mox
        send it: what a client shows beside each folder."""
        items = (f"MESSAGES {seen.messages} UIDNEXT {seen.uidnext}"
                 f" UIDVALIDITY {seen.uidvalidity} UNSEEN {seen.unseen}")
        if "FLAGCHANGE" in events or self.condstore:
            items += f" HIGHESTMODSEQ {seen.modseq}"
        self.send(b"* STATUS " + self._wire_name(folder.name) + f" ({items})".encode())

    def _send_list(self, name: str, folders: list[Folder], subscribed: set[str],
                   old: str | None = None) -> None:
        """RFC 5465 5.4-5.5: a LIST response for a created (or renamed: OLDNAME), deleted
        (\\NonExistent) or (un)subscribed mailbox."""
        folder = next((f for f in folders if f.name == name), None)
        if folder is None:
            attrs = ["\\NonExistent"]
        else:
            prefix = name + DELIMITER
            attrs = ["\\HasChildren" if any(f.name.startswith(prefix) for f in folders)
                     else "\\HasNoChildren"]
            if folder.special_use:
                attrs.append(folder.special_use)
        if self.watch is not None and not self.watch.wants_subscriptions:
            assert self.store is not None
            subscribed = self.store.subscriptions()  # not read at each look: read it now
        if name in subscribed:
            attrs.append("\\Subscribed")
        line = f'* LIST ({" ".join(attrs)}) "{DELIMITER}" '.encode() + self._wire_name(name)
        if old is not None:
            line += b' ("OLDNAME" (' + self._wire_name(old) + b"))"
        self.send(line)

    def _is_selected(self, folder: Folder) -> bool:
        return self.selected is not None and self.selected.folder.id == folder.id
