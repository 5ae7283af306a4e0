"""Mailbox commands: SELECT / EXAMINE / CLOSE / UNSELECT / CHECK, CREATE / DELETE / RENAME,
(UN)SUBSCRIBE, STATUS, APPEND, ENABLE and NAMESPACE (LIST and LSUB: listing.py).
"""

from __future__ import annotations

import asyncio
import functools

from gateway.imap import mime
from gateway.imap.parser import (
    Atom,
    Literal,
    Literal8,
    Token,
    as_atom,
    as_list,
    as_number,
    as_text,
    parse_sequence_set,
)
from gateway.imap.state import Bad, No, Selected, _no_args
from gateway.imap.syntax import parse_imap_datetime, quote, seq_set, uid_ranges
from gateway.imap.updates import SelectedUpdates
from gateway.imap.urls import parse_imap_url
from gateway.store.interfaces import DELIMITER, Appended, Folder


class MailboxCommands(SelectedUpdates):
    """Commands on mailboxes as a whole."""

    async def cmd_enable(self, tag: str, args: list[Token]) -> None:
        if not args:
            raise Bad("ENABLE expects capability names")
        enabled = []
        for a in args:
            name = as_atom(a, "capability").upper()
            if name == "CONDSTORE" and not self.condstore:
                self._enable_condstore()
                enabled.append("CONDSTORE")
            elif name == "QRESYNC" and not self.qresync:  # implies CONDSTORE (RFC 7162 3.2.3)
                self._enable_condstore()
                self.qresync = True
                enabled.append("QRESYNC")
            elif name == "IMAP4REV2" and not self.rev2:
                self.rev2 = True
                enabled.append("IMAP4rev2")
        self.untagged("ENABLED" + "".join(" " + e for e in enabled))
        self.tagged(tag, "OK", "ENABLE completed")

    async def cmd_namespace(self, tag: str, args: list[Token]) -> None:
        _no_args(args)
        self.untagged(f'NAMESPACE (("" "{DELIMITER}")) NIL NIL')
        self.tagged(tag, "OK", "NAMESPACE completed")

    async def cmd_select(self, tag: str, args: list[Token], readonly: bool = False) -> None:
        if not args or len(args) > 2:
            raise Bad("SELECT expects a mailbox name")
        resync = None
        if len(args) == 2:
            resync = self._select_params(as_list(args[1], "select parameters"))
            self.condstore = True
        assert self.store is not None
        if self.selected is not None:
            self.selected = None
            if self.condstore or self.rev2:  # RFC 7162 3.2.11, RFC 9051 7.1
                self.untagged("OK [CLOSED] previous mailbox closed")
        self.denormalized = None
        folder = self._get_folder(args[0])
        await self._adopt_new(folder)
        folder = self.store.folder_by_id(folder.id) or folder
        view = self.store.view(folder)
        uids = view.uids
        sel = Selected(folder, readonly, uids, view.modseq, flags=view.flags)
        sel.keywords = set(folder.keywords)
        sel.recent = (self.store.peek_recent if readonly else self.store.claim_recent)(folder)
        seen = sum(1 for text in view.flags.values() if "\\Seen" in text)
        self._send_flags(sel)
        self.untagged(f"{len(uids)} EXISTS")
        if self.rev2:  # RFC 9051 6.3.2: LIST in place of RECENT and UNSEEN
            self.send(b'* LIST () "' + DELIMITER.encode() + b'" ' + self._wire_name(folder.name)
                      + self._oldname())
        else:
            self.untagged(f"{sel.recent_count()} RECENT")
        if seen < len(uids) and not self.rev2:
            first = next(
                i for i, u in enumerate(uids, 1) if "\\Seen" not in view.flags.get(u, "")
            )
            self.untagged(f"OK [UNSEEN {first}] first unseen message")
        uidnext = max(folder.uidnext, uids[-1] + 1 if uids else 1)
        self.untagged(f"OK [UIDVALIDITY {folder.uidvalidity}] UIDs valid")
        self.untagged(f"OK [UIDNEXT {uidnext}] predicted next UID")
        self.untagged(f"OK [HIGHESTMODSEQ {view.modseq}] highest mod-sequence")
        self.selected = sel
        if resync is not None and resync[0] == folder.uidvalidity:
            self._resync(sel, resync[1], resync[2])
        await self._audit("imap.select", {"folder": folder.name, "messages": len(uids)})
        mode = "READ-ONLY" if readonly else "READ-WRITE"
        self.tagged(tag, "OK", f"{'EXAMINE' if readonly else 'SELECT'} completed", mode)

    def _select_params(
        self, params: list[Token]
    ) -> tuple[int, int, list[tuple[int, int]] | None] | None:
        """(CONDSTORE) and/or (QRESYNC (uidvalidity modseq [known-uids [seq-match]]))."""
        resync = None
        i = 0
        while i < len(params):
            name = as_atom(params[i], "SELECT parameter").upper()
            if name == "CONDSTORE":
                i += 1
            elif name == "QRESYNC" and i + 1 < len(params):
                if not self.qresync:
                    raise Bad("QRESYNC must be enabled first (ENABLE QRESYNC)")
                values = as_list(params[i + 1], "QRESYNC parameters")
                if not 2 <= len(values) <= 4:
                    raise Bad("QRESYNC expects UIDVALIDITY, MODSEQ and optional known UIDs")
                known = None
                if len(values) >= 3:
                    known = parse_sequence_set(as_atom(values[2], "known UIDs"))
                    if known is None:
                        raise Bad("invalid known UIDs")
                # The seq-match data (values[3]) only helps a server that lost expunge
                # records; ours answers from its records or sends the superset RFC 7162 allows.
                resync = (as_number(values[0], "UIDVALIDITY"), as_number(values[1], "MODSEQ"),
                          known)
                i += 2
            else:
                raise Bad("unsupported SELECT parameter")
        return resync

    def _resync(self, sel: Selected, modseq: int, known: list[tuple[int, int]] | None) -> None:
        """RFC 7162 3.2.5: what changed since the client's MODSEQ, as VANISHED (EARLIER) and
        FETCH (UID FLAGS MODSEQ)."""
        assert self.store is not None
        vanished = self.store.vanished_since(sel.folder, modseq, known)
        if vanished:
            self.untagged("VANISHED (EARLIER) " + uid_ranges(vanished))
        changes = self.store.changes_since(sel.folder, modseq, sel.uids[-1] if sel.uids else 0)
        for u, flags, m in changes.changed if changes else []:
            seq = sel.seq_of(u)
            if seq:
                self._announce(flags)
                self.send(b"* %d FETCH (UID %d FLAGS " % (seq, u) + self._flags_of(sel, u, flags)
                          + b" MODSEQ (%d))" % m)

    async def cmd_examine(self, tag: str, args: list[Token]) -> None:
        await self.cmd_select(tag, args, readonly=True)

    async def cmd_create(self, tag: str, args: list[Token]) -> None:
        if len(args) != 1:
            raise Bad("CREATE expects a mailbox name")
        assert self.store is not None
        self.denormalized = None
        name = self._folder_name(args[0]).rstrip(DELIMITER)
        self.store.create_folder(name)
        if self.denormalized is not None:  # RFC 9051 6.3.4: the name it was created under
            self.send(f'* LIST () "{DELIMITER}" '.encode() + self._wire_name(name)
                      + self._oldname())
        self.tagged(tag, "OK", "CREATE completed")

    def _oldname(self) -> bytes:
        """` ("OLDNAME" (name))` when the rev2 client's last name was not in NFC (RFC 9051
        5.1: we keep names normalised and say so), else nothing."""
        given, self.denormalized = self.denormalized, None
        return b"" if given is None else b' ("OLDNAME" (' + quote(given) + b"))"

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
        old, new = self._folder_name(args[0]), self._folder_name(args[1])
        self.store.rename_folder(old, new)
        await self._notify(True)
        if self.rev2 and old != "INBOX":
            self._send_renamed(old, new)
        self.tagged(tag, "OK", "RENAME completed")

    def _send_renamed(self, old: str, new: str) -> None:
        """RFC 9051 (6.3.9, 7.3.1): a LIST response with the OLDNAME extended data item for
        the renamed mailbox and each of its children, so a rev2 client updates its list
        without listing again. (Renaming INBOX moves its messages to a new mailbox: nothing
        was renamed.)"""
        assert self.store is not None
        folders = {f.name: f for f in self.store.folders()}
        renamed = [n for n in sorted(folders) if n == new or n.startswith(new + DELIMITER)]
        for name in renamed:
            folder = folders[name]
            attrs = ["\\HasChildren" if any(n.startswith(name + DELIMITER) for n in folders)
                     else "\\HasNoChildren"]
            if folder.special_use:
                attrs.append(folder.special_use)
            was = old + name[len(new):]
            self.send(f'* LIST ({" ".join(attrs)}) "{DELIMITER}" '.encode()
                      + self._wire_name(name) + b' ("OLDNAME" (' + self._wire_name(was) + b"))")

    async def cmd_subscribe(self, tag: str, args: list[Token], on: bool = True) -> None:
        if len(args) != 1:
            raise Bad("expects a mailbox name")
        assert self.store is not None
        self.store.subscribe(self._folder_name(args[0]), on)
        self.tagged(tag, "OK", f"{'SUBSCRIBE' if on else 'UNSUBSCRIBE'} completed")

    async def cmd_unsubscribe(self, tag: str, args: list[Token]) -> None:
        await self.cmd_subscribe(tag, args, on=False)

    async def cmd_status(self, tag: str, args: list[Token]) -> None:
        if len(args) != 2:
            raise Bad("STATUS expects a mailbox name and a list of items")
        items = _status_items(args[1], self.rev2)
        folder = self._get_folder(args[0])
        await self._adopt_new(folder)
        self.send(self._status_line(folder, items))
        self.tagged(tag, "OK", "STATUS completed")

    def _status_line(self, folder: Folder, items: list[str]) -> bytes:
        """`* STATUS name (...)` for STATUS and for LIST-STATUS (RFC 5819)."""
        assert self.store is not None
        if "HIGHESTMODSEQ" in items:
            self._enable_condstore()
        folder = self.store.folder_by_id(folder.id) or folder
        total, unseen, recent = self.store.counts(folder)
        deleted, size = (self.store.status_sizes(folder) if {"DELETED", "SIZE"} & set(items)
                         else (0, 0))
        values = {
            "MESSAGES": total,
            "RECENT": recent,
            "UIDNEXT": folder.uidnext,
            "UIDVALIDITY": folder.uidvalidity,
            "UNSEEN": unseen,
            "HIGHESTMODSEQ": folder.highestmodseq,
            "DELETED": deleted,
            "SIZE": size,
        }
        out = " ".join(f"{item} {values[item]}" for item in items)
        return b"* STATUS " + self._wire_name(folder.name) + f" ({out})".encode()

    async def cmd_append(self, tag: str, args: list[Token]) -> None:
        """APPEND, with MULTIAPPEND (RFC 3502): after the mailbox, one or more messages, each
        `[flags] [date-time] literal`, or `CATENATE (...)` (RFC 4469) to build the message
        from literals and IMAP URLs of messages or parts already stored; all or none."""
        if len(args) < 2:
            raise Bad("APPEND expects a mailbox, optional flags and date, and a message literal")
        assert self.store is not None
        pending = self._append_messages(args[1:])
        folder = self.store.folder(self._folder_name(args[0]))
        if folder is None:  # before the URLs: RFC 4469 5 wants TRYCREATE even with a bad one
            raise No("no such mailbox; create it first", "TRYCREATE")
        messages = []
        for flags, when, tz, parts, verbatim in pending:
            data = b"".join([p if isinstance(p, bytes) else await self._url_octets(p)
                             for p in parts])
            if len(data) > self.hooks.max_append:
                raise No("message too large", "TOOBIG")
            if not data:
                raise No("empty message")
            messages.append(Appended(data, flags, when, tz, verbatim))
        self._check_quota(sum(len(m.data) for m in messages))
        # In a thread: the files, their fsyncs and the index's durable commit (the store gives
        # APPEND a SQLite connection of its own), so the event loop never waits for the disk.
        uids = await asyncio.get_running_loop().run_in_executor(
            None, functools.partial(self.store.append_many, folder, messages)
        )
        await self._notify(True)
        self.tagged(tag, "OK", "APPEND completed",
                    f"APPENDUID {folder.uidvalidity} {seq_set(uids)}")

    def _append_messages(
        self, args: list[Token]
    ) -> list[tuple[tuple[str, ...], int | None, int | None, list[bytes | str], bool]]:
        """Each message's flags, date, zone, parts (octets, or URLs to read) and whether its
        octets are kept as sent (a literal8)."""
        out: list[tuple[tuple[str, ...], int | None, int | None, list[bytes | str], bool]] = []
        i = 0
        while i < len(args):
            flags: list[str] = []
            when: int | None = None
            tz: int | None = None
            if isinstance(args[i], list):
                flags = self._parse_flags(args[i])  # type: ignore[arg-type]
                i += 1
            if i < len(args) and isinstance(args[i], bytes) and not isinstance(args[i], Literal):
                when, tz = parse_imap_datetime(as_text(args[i], "date-time"))
                i += 1
            if i + 1 < len(args) and isinstance(args[i], Atom) and \
                    str(args[i]).upper() == "CATENATE":
                out.append((tuple(flags), when, tz, _catenate(args[i + 1]), False))
                i += 2
                continue
            if i >= len(args) or not isinstance(args[i], Literal):
                raise Bad("APPEND message must be a literal")
            data = args[i]
            i += 1
            assert isinstance(data, bytes)
            if len(data) > self.hooks.max_append:
                raise No("message too large", "TOOBIG")
            out.append((tuple(flags), when, tz, [data], isinstance(data, Literal8)))
        return out

    async def _url_octets(self, url: str) -> bytes:
        """What a CATENATE URL names, from the user's own mailboxes; NO [BADURL] otherwise."""
        assert self.store is not None and self.login is not None
        bad = No(f"cannot use the URL {url[:200]}", f"BADURL {url[:200]}")
        parsed = parse_imap_url(url, self.login.address)
        if parsed is None:
            raise bad
        folder = self.store.folder(parsed.mailbox)
        if folder is None or parsed.uidvalidity not in (None, folder.uidvalidity):
            raise bad
        info = self.store.infos(folder, [parsed.uid]).get(parsed.uid)
        if info is None:
            raise bad
        data = self.store.read(folder, info.base)
        if parsed.section:
            try:
                section = mime.parse_section(parsed.section)
            except mime.SectionError:
                raise bad from None
            root = mime.parse(data) if section.path else None
            data = mime.section_bytes(data, root, section)
        if parsed.partial is not None:
            start, length = parsed.partial
            data = data[start:] if length is None else data[start : start + length]
        await self._audit("imap.read", {"folder": folder.name, "uids": str(parsed.uid)})
        return data

    # --- QUOTA (RFC 9208): one quota root, "", for all of the user's folders ------------------

    def _send_quota(self) -> None:
        assert self.store is not None and self.login is not None
        used = (self.store.usage() + 1023) // 1024  # STORAGE counts in units of 1024 octets
        self.untagged(f'QUOTA "" (STORAGE {used} {self.login.quota // 1024})')

    async def cmd_getquotaroot(self, tag: str, args: list[Token]) -> None:
        if len(args) != 1:
            raise Bad("GETQUOTAROOT expects a mailbox name")
        assert self.login is not None
        folder = self._get_folder(args[0])
        name = self._wire_name(folder.name).decode()
        if self.login.quota:
            self.untagged(f'QUOTAROOT {name} ""')
            self._send_quota()
        else:
            self.untagged(f"QUOTAROOT {name}")  # no quota applies
        self.tagged(tag, "OK", "GETQUOTAROOT completed")

    async def cmd_getquota(self, tag: str, args: list[Token]) -> None:
        if len(args) != 1:
            raise Bad("GETQUOTA expects a quota root")
        assert self.login is not None
        if as_text(args[0], "quota root") != "" or not self.login.quota:
            raise No("no such quota root", "NONEXISTENT")
        self._send_quota()
        self.tagged(tag, "OK", "GETQUOTA completed")

    async def cmd_setquota(self, tag: str, args: list[Token]) -> None:
        if len(args) != 2:
            raise Bad("SETQUOTA expects a quota root and a list of limits")
        as_list(args[1], "resource limits")
        raise No("quotas are set by the operator ([quota] in the configuration)", "NOPERM")

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


def _catenate(tok: Token) -> list[bytes | str]:
    """CATENATE's list: TEXT literal / URL astring pairs (RFC 4469 5)."""
    items = as_list(tok, "CATENATE parts")
    if not items or len(items) % 2:
        raise Bad("CATENATE expects TEXT literal and URL url parts")
    parts: list[bytes | str] = []
    for kind_tok, value in zip(items[::2], items[1::2], strict=True):
        kind = as_atom(kind_tok, "CATENATE part").upper()
        if kind == "TEXT" and isinstance(value, Literal):
            parts.append(bytes(value))
        elif kind == "URL" and not isinstance(value, list):
            parts.append(as_text(value, "URL"))
        else:
            raise Bad("CATENATE expects TEXT literal and URL url parts")
    return parts


STATUS_ITEMS = ("MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ",
                "DELETED", "SIZE")  # DELETED: RFC 9051; SIZE: RFC 8438


def _status_items(tok: Token, rev2: bool = False) -> list[str]:
    items = [as_atom(i, "status item").upper() for i in as_list(tok, "status items")]
    if not items:
        raise Bad("STATUS needs at least one item")
    for item in items:
        if item not in STATUS_ITEMS:
            raise Bad(f"unknown STATUS item {item[:20]}")
        if item == "RECENT" and rev2:  # RFC 9051 removed \Recent, and RECENT with it
            raise Bad("STATUS RECENT does not exist in IMAP4rev2 (RFC 9051: no \\Recent)")
    return items
