"""Commands on the selected mailbox's messages other than FETCH: STORE (with UNCHANGEDSINCE),
SEARCH, COPY, MOVE and EXPUNGE (UID EXPUNGE of UIDPLUS).
"""

from __future__ import annotations

import asyncio
import functools

from gateway.imap.parser import Atom, Token, as_atom, as_number
from gateway.imap.search import (
    BadCharset,
    Candidate,
    Key,
    bind_saved,
    matches,
    needs_message,
    parse_search,
    uses_modseq,
)
from gateway.imap.state import Bad, No, _no_args
from gateway.imap.syntax import quote, seq_set
from gateway.imap.updates import SelectedUpdates


class MessageCommands(SelectedUpdates):
    """STORE, SEARCH, COPY, MOVE, EXPUNGE on the selected mailbox."""

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
            self._enable_condstore()
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
            if uid or self.condstore:  # RFC 7162 3.1: UID and MODSEQ once CONDSTORE is on
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
        options = None
        saved = sel.saved  # what "$" means in this very command
        if args and isinstance(args[0], Atom) and args[0].upper() == "RETURN":
            if len(args) < 2:
                raise Bad("SEARCH RETURN expects a list of options")
            options = _return_options(args[1])
            args = args[2:]
            if "SAVE" in options:
                sel.saved = frozenset()  # RFC 5182 2.1: a failed SEARCH (SAVE) leaves "$" empty
        if options is None and self.rev2:
            options = {"ALL"}  # RFC 9051 6.4.4: the answer is always ESEARCH
        try:
            _, keys = parse_search(args)
        except BadCharset:
            raise No("unsupported charset", "BADCHARSET (US-ASCII UTF-8)") from None
        folder = sel.folder
        heavy = needs_message(keys)
        found = await self._matching(keys, saved)
        modseq = uses_modseq(keys)
        if modseq:
            self._enable_condstore()
        if options is not None:
            if "SAVE" in options:
                sel.saved = saved_result(options, [u for _, u, _ in found])
            if options - {"SAVE"}:  # SAVE alone: no ESEARCH response (RFC 5182 2.1)
                self.untagged(_esearch(tag, uid, options, found, modseq))
        else:
            numbers = [u if uid else s for s, u, _ in found]
            line = "SEARCH" + "".join(f" {n}" for n in numbers)
            if modseq and found:
                line += f" (MODSEQ {max(m for _, _, m in found)})"
            self.untagged(line)
        if heavy:
            await self._audit("imap.search", {"folder": folder.name})
        await self._notify(uid)
        self.tagged(tag, "OK", f"{'UID ' if uid else ''}SEARCH completed")

    async def _matching(
        self, keys: list[Key], saved: frozenset[int] | None = None
    ) -> list[tuple[int, int, int]]:
        """(sequence number, UID, MODSEQ) of the selected mailbox's messages matching all of
        `keys`, in mailbox order (shared by SEARCH, SORT and THREAD)."""
        sel = self.selected
        store = self.store
        assert sel is not None and store is not None
        folder = sel.folder
        bind_saved(keys, sel.saved if saved is None else saved)
        if all(k.name == "ALL" for k in keys):  # SORT/SEARCH ... ALL: no row needed
            return [(i, u, 0) for i, u in enumerate(sel.uids, 1)]
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
                functools.partial(store.read, folder, info.base), info.tz,
            )
            if all(matches(k, cand, len(sel.uids), largest_uid) for k in keys):
                found.append((i + 1, u, info.modseq))
            if heavy and i % 200 == 199:
                await asyncio.sleep(0)  # long text searches leave room for other clients
        return found

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
        if not move and uids:
            self._check_quota(sum(i.size for i in self.store.infos(sel.folder, uids).values()))
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


_RETURN_OPTIONS = ("MIN", "MAX", "ALL", "COUNT", "SAVE")


def saved_result(options: set[str], uids: list[int]) -> frozenset[int]:
    """What SEARCH/SORT RETURN (SAVE ...) keeps as "$" (RFC 5182 2.4): with MIN and/or MAX and
    neither ALL nor COUNT, only those messages; else the whole result. `uids` in the order
    the options' MIN and MAX refer to."""
    if uids and options & {"MIN", "MAX"} and not options & {"ALL", "COUNT"}:
        kept = set()
        if "MIN" in options:
            kept.add(uids[0])
        if "MAX" in options:
            kept.add(uids[-1])
        return frozenset(kept)
    return frozenset(uids)


def _return_options(tok: Token) -> set[str]:
    """RFC 4731 SEARCH RETURN (...): MIN, MAX, ALL, COUNT, and SAVE (RFC 5182); an empty list
    means ALL."""
    if not isinstance(tok, list):
        raise Bad("SEARCH RETURN expects a list of options")
    options = {as_atom(t, "SEARCH RETURN option").upper() for t in tok}
    unknown = options - set(_RETURN_OPTIONS)
    if unknown:
        raise Bad(f"unsupported SEARCH RETURN option {sorted(unknown)[0][:20]}")
    return options or {"ALL"}


def _esearch(tag: str, uid: bool, options: set[str], found: list[tuple[int, int, int]],
             modseq: bool) -> str:
    """The ESEARCH response (RFC 4731): MIN, MAX and ALL only when something matched, COUNT
    always; with a MODSEQ key, the highest mod-sequence of the messages returned (RFC 7162
    3.1.5: all of them for ALL/COUNT, else the MIN/MAX ones)."""
    line = f"ESEARCH (TAG {quote(tag).decode()})" + (" UID" if uid else "")
    numbers = [u if uid else s for s, u, _ in found]
    returned: list[int] = []  # indexes into found
    if found:
        if "MIN" in options:
            line += f" MIN {numbers[0]}"
            returned.append(0)
        if "MAX" in options:
            line += f" MAX {numbers[-1]}"
            returned.append(len(found) - 1)
        if "ALL" in options:
            line += f" ALL {seq_set(numbers)}"
    if "COUNT" in options:
        line += f" COUNT {len(found)}"
    if modseq and found:
        if options & {"ALL", "COUNT"}:
            returned = list(range(len(found)))
        line += f" MODSEQ {max(found[i][2] for i in returned)}"
    return line
