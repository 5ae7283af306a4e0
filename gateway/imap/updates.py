"""Keeping the selected mailbox's view true: untagged EXISTS / EXPUNGE / FETCH / FLAGS for
changes made by this session or by others (another client, a delivery, another worker),
and the translation of sequence and UID sets through that view.

Other sessions' changes reach this one through the index's per-folder MODSEQ: after each
command, and twice a second during IDLE (or, after NOTIFY, while the client is silent),
`_notify` asks the index what changed since the MODSEQ this session has seen. EXPUNGE is held
back during FETCH, STORE and SEARCH, whose sequence numbers it would shift (RFC 3501 7.4.1).
Once NOTIFY is in force, only the events its SELECTED group asks for are told (notify.py).
"""

from __future__ import annotations

import bisect
import dataclasses

from gateway.imap.parser import parse_sequence_set
from gateway.imap.state import SYSTEM_FLAGS, Bad, Selected, SessionState
from gateway.imap.syntax import flag_list, seq_set


class SelectedUpdates(SessionState):
    """The selected mailbox's view and the untagged responses that keep it true."""

    async def _notify(self, allow_expunge: bool) -> None:
        sel = self.selected
        store = self.store
        wanted = self.notify_selected
        if sel is None or store is None or (wanted is not None and not wanted):
            return
        await self._adopt_new(sel.folder)
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
        held = bool(present) and not allow_expunge
        if held and wanted is None:
            return  # reported after a command that may shift sequence numbers
        if present and not held:
            self._report_expunged(present)
        # NOTIFY SELECTED-DELAYED (RFC 5465 5.3): with an expunge held back, arrivals and flag
        # changes are still told; the MODSEQ stays where the expunge is, so changes already
        # told come again at the next look and are passed over (the view has their flags).
        tell_flags = wanted is None or "FLAGCHANGE" in wanted
        changed: set[int] = set()
        for u, flags, m in changes.changed:
            seq = sel.seq_of(u)
            if not seq or (held and sel.flags.get(u, "") == " ".join(flags)):
                continue
            changed.add(u)
            sel.set_flags(u, flags)
            if sel.own.get(u) == m or not tell_flags:
                continue
            self._announce(flags)
            extra = b" MODSEQ (%d)" % m if self.condstore else b""
            self.io.send(
                b"* %d FETCH (UID %d FLAGS " % (seq, u) + self._flags_of(sel, u, flags) + extra
                + b")\r\n"
            )
        if changes.new:
            for u, text in changes.new:
                sel.uids.append(u)
                if text:
                    sel.flags[u] = text
                    self._announce(text)
            sel.recent |= (store.peek_recent if sel.readonly else store.claim_recent)(sel.folder)
            self.untagged(f"{len(sel.uids)} EXISTS")
            if not self.rev2:
                self.untagged(f"{sel.recent_count()} RECENT")
        if not held:
            sel.own.clear()
            sel.modseq = changes.highestmodseq
        if changes.new:
            await self._announce_new([u for u, _ in changes.new])
        if sel.contexts and (changed or changes.new):
            await self._update_contexts(changed, [u for u, _ in changes.new])

    async def _announce_new(self, uids: list[int]) -> None:
        """NOTIFY's MessageNew fetch attributes, after the EXISTS (notify.py)."""

    async def _update_contexts(self, changed: set[int], new: list[int]) -> None:
        """RFC 5267 updating searches (MessageCommands): told what changed or arrived."""

    def _contexts_before_expunge(self, uids: list[int]) -> None:
        """RFC 5267 updating searches (MessageCommands): told what is about to go."""

    def _report_expunged(self, uids: list[int]) -> None:
        sel = self.selected
        assert sel is not None
        seqs = sorted((s for s in (sel.seq_of(u) for u in uids) if s), reverse=True)
        if not seqs:
            return
        gone = set(uids)
        if sel.contexts:
            self._contexts_before_expunge(uids)
        if self.qresync:  # RFC 7162 3.2.10: one VANISHED line instead of EXPUNGEs
            self.untagged("VANISHED " + seq_set([u for u in uids if sel.seq_of(u)]))
        else:
            for s in seqs:
                self.untagged(f"{s} EXPUNGE")
        sel.uids = [u for u in sel.uids if u not in gone]
        sel.recent -= gone
        for u in gone:
            sel.flags.pop(u, None)

    def _resolve(self, text: str, uid: bool) -> list[int]:
        """A sequence set (or UID set) -> the UIDs it names in this session, ascending."""
        sel = self.selected
        assert sel is not None
        if text == "$":  # RFC 5182: the saved result, less what was expunged since
            return [u for u in sel.uids if u in sel.saved]
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
        if uid in sel.recent and not self.rev2:
            return flag_list((*flags, "\\Recent"))
        return flag_list(flags)

