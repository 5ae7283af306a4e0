"""Commands on the selected mailbox's messages other than FETCH: STORE (with UNCHANGEDSINCE),
SEARCH (with ESEARCH, SEARCHRES and RFC 5267's UPDATE and PARTIAL: `imap/contexts.py`),
CANCELUPDATE, COPY, MOVE and EXPUNGE (UID EXPUNGE of UIDPLUS).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence

from gateway.imap import contexts, threading
from gateway.imap.contexts import (
    MAX_CONTEXTS,
    Context,
    ReturnOptions,
    parse_return_options,
    partial_data,
)
from gateway.imap.parser import Atom, Literal, Token, as_atom, as_number, as_text
from gateway.imap.search import (
    BadCharset,
    Candidate,
    Key,
    bind_saved,
    matches,
    needs_message,
    parse_search,
    uses_modseq,
    uses_recent,
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
            options = parse_return_options(args[1])
            args = args[2:]
            self._check_update(tag, options)
            if "SAVE" in options:
                sel.saved = frozenset()  # RFC 5182 2.1: a failed SEARCH (SAVE) leaves "$" empty
        if options is None and self.rev2:
            options = ReturnOptions(frozenset({"ALL"}))  # RFC 9051 6.4.4: always ESEARCH
        try:
            _, keys = parse_search(args)
        except BadCharset:
            raise No("unsupported charset", "BADCHARSET (US-ASCII UTF-8)") from None
        self._check_keys(keys)
        folder = sel.folder
        heavy = needs_message(keys)
        found = await self._matching(keys, saved)
        modseq = uses_modseq(keys)
        if modseq:
            self._enable_condstore()
        if options is not None:
            if "SAVE" in options:
                sel.saved = saved_result(options.names, [u for _, u, _ in found])
            if options.names - {"SAVE", "CONTEXT"}:  # SAVE alone: no ESEARCH (RFC 5182 2.1)
                self.untagged(_esearch(tag, uid, options, found, modseq))
            if "UPDATE" in options:
                self._keep_context(Context(tag, uid, keys, [u for _, u, _ in found]))
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

    def _check_keys(self, keys: list[Key]) -> None:
        """RFC 9051 removed \\Recent: in IMAP4rev2, RECENT, NEW and OLD are not search keys."""
        if self.rev2 and uses_recent(keys):
            raise Bad("RECENT, NEW and OLD do not exist in IMAP4rev2 (RFC 9051: no \\Recent)")

    # --- RFC 5267 contexts: results kept current (gateway.imap.contexts) ------------------

    def _check_update(self, tag: str, options: ReturnOptions) -> None:
        sel = self.selected
        assert sel is not None
        if "UPDATE" in options and tag in sel.contexts:
            raise Bad(f"the search {tag[:40]} is already being updated: use another tag")

    def _keep_context(self, ctx: Context) -> None:
        sel = self.selected
        assert sel is not None
        if len(sel.contexts) >= MAX_CONTEXTS:
            self.untagged(f"NO [NOUPDATE {quote(ctx.tag).decode()}] too many updating searches"
                          f" ({MAX_CONTEXTS}): this one is not kept current")
            return
        sel.contexts[ctx.tag] = ctx

    async def cmd_cancelupdate(self, tag: str, args: list[Token]) -> None:
        """CANCELUPDATE "tag" ... (RFC 5267 4.3.2): those searches are no longer kept."""
        sel = self.selected
        assert sel is not None
        if not args or not all(isinstance(a, bytes) and not isinstance(a, Literal)
                               for a in args):
            raise Bad("CANCELUPDATE expects one or more quoted tags")
        tags = [as_text(a, "tag") for a in args]
        unknown = [t for t in tags if t not in sel.contexts]
        if unknown:
            raise No(f"no updating search has the tag {unknown[0][:40]}")
        for t in tags:
            del sel.contexts[t]
        self.tagged(tag, "OK", "CANCELUPDATE completed")

    def _contexts_before_expunge(self, uids: list[int]) -> None:
        """REMOVEFROM for the contexts' messages about to be reported expunged (their
        sequence numbers still the ones the client knows)."""
        sel = self.selected
        assert sel is not None
        for ctx in sel.contexts.values():
            line = contexts.remove(ctx, uids, (lambda u: u) if ctx.uid else sel.seq_of)
            if line:
                self.untagged(line)

    async def _update_contexts(self, changed: set[int], new: list[int]) -> None:
        """Re-test what changed flags or arrived against each context's keys; ADDTO and
        REMOVEFROM for what entered or left its result."""
        sel = self.selected
        store = self.store
        assert sel is not None and store is not None
        for ctx in list(sel.contexts.values()):
            tested = list(sel.uids) if ctx.everything else \
                sorted(u for u in changed | set(new) if sel.seq_of(u))
            if not tested:
                continue
            found = await self._matching(ctx.keys, uids=tested)
            if self.selected is not sel:
                return  # the mailbox went away meanwhile
            order = None if ctx.criteria is None else functools.partial(self._sort_order, ctx)
            line = contexts.apply(ctx, tested, {u for _, u, _ in found}, sel.uids,
                                  (lambda u: u) if ctx.uid else sel.seq_of, order)
            if line:
                self.untagged(line)

    def _sort_order(self, ctx: Context, uids: list[int]) -> list[int]:
        """`uids` (mailbox order) in `ctx`'s SORT order, reading the sort values of the
        messages it has not seen yet."""
        sel = self.selected
        store = self.store
        assert sel is not None and store is not None and ctx.criteria is not None
        for name in {c for c, _ in ctx.criteria}:
            known = ctx.values.setdefault(name, {})
            missing = [u for u in uids if u not in known]
            if missing:
                known.update(store.sort_values(sel.folder, missing, threading.SORT_FIELDS[name]))
        present = [u for u in uids if all(u in ctx.values[c] for c, _ in ctx.criteria)]
        return threading.sort(present, ctx.criteria, ctx.values)

    async def _matching(
        self, keys: list[Key], saved: frozenset[int] | None = None,
        uids: Sequence[int] | None = None,
    ) -> list[tuple[int, int, int]]:
        """(sequence number, UID, MODSEQ) of the selected mailbox's messages (only `uids`,
        ascending, when given) matching all of `keys`, in mailbox order (shared by SEARCH,
        SORT, THREAD and the updating searches)."""
        sel = self.selected
        store = self.store
        assert sel is not None and store is not None
        folder = sel.folder
        if saved is not None or uids is None:
            bind_saved(keys, sel.saved if saved is None else saved)
        candidates = sel.uids if uids is None else uids
        if all(k.name == "ALL" for k in keys):  # SORT/SEARCH ... ALL: no row needed
            return [(sel.seq_of(u), u, 0) for u in candidates] if uids is not None else \
                [(i, u, 0) for i, u in enumerate(sel.uids, 1)]
        infos = store.infos(folder, candidates)
        largest_uid = sel.uids[-1] if sel.uids else 0
        found: list[tuple[int, int, int]] = []
        heavy = needs_message(keys)
        for i, u in enumerate(candidates):
            info = infos.get(u)
            seq = i + 1 if uids is None else sel.seq_of(u)
            if info is None or not seq:
                continue
            cand = Candidate(
                seq, u, info.flags, info.internaldate, info.size, info.modseq, u in sel.recent,
                functools.partial(store.read, folder, info.base), info.tz,
            )
            if all(matches(k, cand, len(sel.uids), largest_uid) for k in keys):
                found.append((seq, u, info.modseq))
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


def saved_result(options: frozenset[str], uids: list[int]) -> frozenset[int]:
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


def _esearch(tag: str, uid: bool, options: ReturnOptions, found: list[tuple[int, int, int]],
             modseq: bool) -> str:
    """The ESEARCH response (RFC 4731): MIN, MAX and ALL only when something matched, COUNT
    always, PARTIAL (RFC 5267 4.4) always; with a MODSEQ key, the highest mod-sequence of the
    messages returned (RFC 7162 3.1.5: all of them for ALL/COUNT, else the MIN/MAX ones)."""
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
    if options.partial is not None:
        line += partial_data(options.partial, numbers, seq_set)
        lo, hi = options.partial
        returned.extend(range(lo - 1, min(hi, len(found))))
    if "COUNT" in options:
        line += f" COUNT {len(found)}"
    if modseq and found:
        if options.names & {"ALL", "COUNT"}:
            returned = list(range(len(found)))
        if returned:
            line += f" MODSEQ {max(found[i][2] for i in returned)}"
    return line
