"""SORT and THREAD (RFC 5256), with SORT=DISPLAY (RFC 5957), ESORT (RFC 5267 3) and
CONTEXT=SORT (RFC 5267 4: UPDATE, PARTIAL; `imap/contexts.py`).

The messages are chosen by the SEARCH keys (`MessageCommands._matching`), then ordered from
the keys the index keeps for each message (`MailStore.sort_values`, `thread_keys`: base
subject, sent date, addresses, references), so no message file is opened. The orderings
themselves are pure functions in `gateway.imap.threading`.
"""

from __future__ import annotations

from gateway.imap import threading
from gateway.imap.contexts import (
    Context,
    ReturnOptions,
    ordered_set,
    parse_return_options,
    partial_data,
)
from gateway.imap.messages import MessageCommands, saved_result
from gateway.imap.parser import Atom, Token, as_atom, as_list, as_text
from gateway.imap.search import CHARSETS, BadCharset, Key, parse_search
from gateway.imap.state import Bad, No
from gateway.imap.syntax import quote


class SortCommands(MessageCommands):
    """SORT, UID SORT, THREAD, UID THREAD on the selected mailbox."""

    async def cmd_sort(self, tag: str, args: list[Token], uid: bool = False) -> None:
        options = None
        if args and isinstance(args[0], Atom) and args[0].upper() == "RETURN":
            if len(args) < 2:
                raise Bad("SORT RETURN expects a list of options")
            options = parse_return_options(args[1], "SORT")
            args = args[2:]
            self._check_update(tag, options)
        if len(args) < 3:
            raise Bad("SORT expects sort criteria, a charset and search keys")
        criteria = _criteria(as_list(args[0], "sort criteria"))
        sel = self.selected
        store = self.store
        assert sel is not None and store is not None
        keys = self._keys(args[1], args[2:])
        found = await self._matching(keys)
        uids = [u for _, u, _ in found]
        # Only the columns the criteria name are read from the index.
        values = {name: store.sort_values(sel.folder, uids, threading.SORT_FIELDS[name])
                  for name in {c for c, _ in criteria}}
        present = values[criteria[0][0]]
        ranked = threading.sort([u for u in uids if u in present], criteria, values)
        if uid:
            ordered = ranked
        else:
            seq = {u: s for s, u, _ in found}
            ordered = [seq[u] for u in ranked]
        if options is None:
            self.untagged("SORT" + "".join(f" {n}" for n in ordered))
        else:
            if "SAVE" in options:
                sel.saved = saved_result(options.names, ranked)
            if options.names - {"SAVE", "CONTEXT"}:
                self.untagged(_esort(tag, uid, options, ordered))
            if "UPDATE" in options:
                self._keep_context(Context(tag, uid, keys, ranked, criteria, values))
        await self._notify(uid)
        self.tagged(tag, "OK", f"{'UID ' if uid else ''}SORT completed")

    async def cmd_thread(self, tag: str, args: list[Token], uid: bool = False) -> None:
        if len(args) < 3:
            raise Bad("THREAD expects an algorithm, a charset and search keys")
        algorithm = as_atom(args[0], "threading algorithm").upper()
        if algorithm not in threading.THREAD_ALGORITHMS:
            raise Bad(f"unknown threading algorithm {algorithm[:30]}")
        sel = self.selected
        store = self.store
        assert sel is not None and store is not None
        found = await self._matching(self._keys(args[1], args[2:]))
        uids = [u for _, u, _ in found]
        if algorithm == "REFERENCES":
            keys = store.thread_keys(sel.folder, uids)
            numbers, rows = [], []
            for s, u, _ in found:
                row = keys.get(u)
                if row is not None:  # else expunged by another session meanwhile
                    numbers.append(u if uid else s)
                    rows.append(row)
            data = threading.references(numbers, rows)
        else:  # only the base subject and the sent date are read
            subjects = store.sort_values(sel.folder, uids, "subject")
            sent = store.sort_values(sel.folder, uids, "sent")
            data = threading.orderedsubject_text(
                [(u if uid else s, s, subjects[u], sent[u]) for s, u, _ in found
                 if u in subjects and u in sent])
        self.untagged("THREAD" + (f" {data}" if data else ""))
        await self._notify(uid)
        self.tagged(tag, "OK", f"{'UID ' if uid else ''}THREAD completed")

    def _keys(self, charset_tok: Token, keys_toks: list[Token]) -> list[Key]:
        charset = as_text(charset_tok, "charset").upper()
        if charset not in CHARSETS:
            raise No("unsupported charset", "BADCHARSET (US-ASCII UTF-8)")
        try:
            keys = parse_search([Atom("CHARSET"), charset.encode(), *keys_toks])[1]
        except BadCharset:
            raise No("unsupported charset", "BADCHARSET (US-ASCII UTF-8)") from None
        self._check_keys(keys)
        return keys


def _criteria(toks: list[Token]) -> list[tuple[str, bool]]:
    out: list[tuple[str, bool]] = []
    reverse = False
    for t in toks:
        name = as_atom(t, "sort criterion").upper()
        if name == "REVERSE":
            if reverse:
                raise Bad("REVERSE twice in a row")
            reverse = True
            continue
        if name not in threading.SORT_CRITERIA:
            raise Bad(f"unknown sort criterion {name[:30]}")
        out.append((name, reverse))
        reverse = False
    if reverse or not out:
        raise Bad("SORT needs at least one criterion (REVERSE must precede one)")
    return out


def _esort(tag: str, uid: bool, options: ReturnOptions, ordered: list[int]) -> str:
    """RFC 5267 3.2: MIN and MAX are the first and last messages in sort order, ALL lists
    them in sort order (ranges only over ascending runs), PARTIAL the positions asked for
    (4.4), COUNT counts them."""
    line = f"ESEARCH (TAG {quote(tag).decode()})" + (" UID" if uid else "")
    if ordered:
        if "MIN" in options:
            line += f" MIN {ordered[0]}"
        if "MAX" in options:
            line += f" MAX {ordered[-1]}"
        if "ALL" in options:
            line += f" ALL {ordered_set(ordered)}"
    if options.partial is not None:
        line += partial_data(options.partial, ordered, ordered_set)
    if "COUNT" in options:
        line += f" COUNT {len(ordered)}"
    return line
