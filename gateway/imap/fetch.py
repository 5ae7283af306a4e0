"""FETCH: every data item of RFC 3501 plus MODSEQ / CHANGEDSINCE (RFC 7162); the FLAGS-only
poll is answered from the session's view without touching the index.
"""

from __future__ import annotations

import asyncio
import bisect

from gateway.imap import mime
from gateway.imap.parser import Atom, Token, as_atom, as_list, as_number, parse_sequence_set
from gateway.imap.state import Bad, No
from gateway.imap.syntax import (
    FETCH_MACROS,
    FetchItem,
    imap_date,
    literal,
    nul_free,
    parse_fetch_item,
    seq_set,
    uid_ranges,
)
from gateway.imap.updates import SelectedUpdates
from gateway.store.interfaces import Folder, MessageInfo


class FetchCommand(SelectedUpdates):
    """FETCH and UID FETCH."""

    async def cmd_fetch(self, tag: str, args: list[Token], uid: bool = False) -> None:
        if len(args) not in (2, 3):
            raise Bad("FETCH expects a sequence set and data items")
        sel = self.selected
        assert sel is not None and self.store is not None
        set_text = as_atom(args[0], "sequence set")
        items = self._fetch_items(args[1])
        changedsince = None
        vanished = False
        if len(args) == 3:
            mods = as_list(args[2], "fetch modifiers")
            words = [str(m).upper() for m in mods]
            vanished = words[2:] == ["VANISHED"]
            if len(mods) != 2 + vanished or words[0] != "CHANGEDSINCE":
                raise Bad("unsupported FETCH modifier")
            if vanished and not (uid and self.qresync):
                raise Bad("VANISHED needs UID FETCH and ENABLE QRESYNC")
            changedsince = as_number(mods[1], "CHANGEDSINCE")
        uids = self._resolve(set_text, uid)
        names = {i.name for i in items}
        if vanished and changedsince is not None:  # RFC 7162 3.2.6
            earlier = self.store.vanished_since(sel.folder, changedsince,
                                                parse_sequence_set(set_text))
            if earlier:
                self.untagged("VANISHED (EARLIER) " + uid_ranges(earlier))
        if changedsince is not None or "MODSEQ" in names:
            self._enable_condstore()
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
        self, uids: list[int], items: list[FetchItem], changedsince: int | None,
        peek: bool = False,
    ) -> int:
        """Send the FETCH responses; returns how many messages no longer exist. `peek`: never
        set \\Seen (NOTIFY's fetch attributes, RFC 5465 5.2)."""
        sel = self.selected
        store = self.store
        assert sel is not None and store is not None
        folder = sel.folder
        infos = store.infos(folder, uids)
        names = {i.name for i in items}
        need_file = bool(names & {"BODY[]", "BINARY[]", "BINARY.SIZE[]", "RFC822",
                                  "RFC822.HEADER", "RFC822.TEXT"})
        need_cache = bool(names & {"ENVELOPE", "BODYSTRUCTURE", "BODY"})
        sets_seen = not sel.readonly and not peek and any(
            (i.name in ("BODY[]", "BINARY[]") and not i.peek)
            or i.name in ("RFC822", "RFC822.TEXT")
            for i in items
        )
        reads_content = bool(names & {"BODY[]", "BINARY[]", "RFC822", "RFC822.TEXT"})
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
                    parts.append(b"INTERNALDATE " + imap_date(info.internaldate, info.tz))
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
                    parts.append(b"RFC822 " + mime.string(nul_free(data)))
                elif n == "RFC822.HEADER":
                    assert data is not None
                    header = mime.split_message(data)[0]
                    parts.append(b"RFC822.HEADER " + mime.string(nul_free(header)))
                elif n == "RFC822.TEXT":
                    assert data is not None
                    text = mime.split_message(data)[1]
                    parts.append(b"RFC822.TEXT " + mime.string(nul_free(text)))
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
                    parts.append(label + b" " + literal(nul_free(value)))
                elif n in ("BINARY[]", "BINARY.SIZE[]"):
                    assert data is not None and item.section is not None
                    if item.section.path and root is None:
                        root = await _parse(data)
                    try:
                        value = mime.binary_bytes(data, root, item.section)
                    except mime.UnknownEncoding as exc:
                        raise No(f"cannot decode the {exc} transfer encoding",
                                 "UNKNOWN-CTE") from None
                    label = item.label.encode()
                    if n == "BINARY.SIZE[]":
                        parts.append(label + b" %d" % len(value))
                        continue
                    if item.partial:
                        start, count = item.partial
                        value = value[start : start + count]
                        label += b"<%d>" % start
                    # RFC 3516: a literal8 (~{n}) when the content holds NUL octets
                    parts.append(label + (b" ~" if b"\0" in value else b" ") + literal(value))
            if flags_changed and "FLAGS" not in names:
                parts.append(b"FLAGS " + self._flags_of(sel, u, flags))
            if "FLAGS" in names or flags_changed:
                self._announce(flags)
            if self.condstore and flags_changed:  # RFC 7162 3.1: with UID and MODSEQ
                if "UID" not in names:
                    parts.append(b"UID %d" % u)
                if "MODSEQ" not in names:
                    parts.append(b"MODSEQ (%d)" % modseq)
            self.io.send(b"* %d FETCH (" % seq + b" ".join(parts) + b")\r\n")
            if data is not None and len(data) > 65536:
                await self.io.flush()
        if new_cache:
            store.set_cached(folder, new_cache)
        if read_uids:
            await self._audit("imap.read", {"folder": folder.name, "uids": seq_set(read_uids)})
        return len(uids) - len(infos)

    def _fetch_flags(self, uids: list[int], names: list[str]) -> None:
        """FETCH of FLAGS and UID only: from the session's view, without the index (the
        common "what changed" poll of every client, and SELECT + FETCH 1:* FLAGS)."""
        sel = self.selected
        assert sel is not None
        memo: dict[str, bytes] = {}
        flags, all_uids = sel.flags, sel.uids
        recent = set() if self.rev2 else sel.recent  # RFC 9051: no \Recent
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

    async def _read(self, folder: Folder, info: MessageInfo) -> bytes:
        assert self.store is not None
        if info.size > 1024 * 1024:
            data = await asyncio.get_running_loop().run_in_executor(
                None, self.store.read_file, folder, info.base
            )
            if data is not None:
                return data
        return self.store.read(folder, info.base)


async def _parse(data: bytes) -> mime.Part:
    if len(data) > 256 * 1024:  # keep the event loop free while a big message is walked
        return await asyncio.get_running_loop().run_in_executor(None, mime.parse, data)
    return mime.parse(data)

