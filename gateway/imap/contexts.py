"""RFC 5267 (CONTEXT=SEARCH, CONTEXT=SORT): SEARCH and SORT results the server keeps current,
and the PARTIAL return option. Pure: the session (`imap/updates.py`) calls these with what
changed and sends the lines they give.

A `SEARCH RETURN (UPDATE ...)` or `SORT RETURN (UPDATE ...)` leaves a `Context` on the selected
mailbox, under the command's tag, until `CANCELUPDATE "tag"` or until the mailbox is closed. As
messages arrive, change flags or are expunged (by this session or any other), the session
re-tests the messages concerned against the context's search keys and tells the client what
entered or left the result: `* ESEARCH (TAG "t") [UID] REMOVEFROM (pos set) ADDTO (pos set)`.

- The result is kept as UIDs, whatever the client asked for: sequence numbers are computed when
  a line is sent. A REMOVEFROM for an expunged message goes out before its EXPUNGE (its
  sequence number is still the one the client knows), an ADDTO for a new message after EXISTS.
- Positions: a SEARCH result is unordered, its position is 0 (as RFC 5267 4.3.4's example and
  Dovecot). A SORT result is a list: each REMOVEFROM names the 1-based position the message
  had (the highest first, so the others do not move), each ADDTO the position it takes (the
  lowest first); sort keys never change, so the messages that stay keep their order.
- Keys that depend on a message's position or on the time (sequence numbers, "*" in a UID
  set, OLDER/YOUNGER) make every message be re-tested at each change; other keys only the
  messages that changed.
- At most `MAX_CONTEXTS` per session; beyond, the search is answered and an untagged
  `NO [NOUPDATE "tag"]` says it will not be kept current (RFC 5267 4.3.1).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from gateway.imap.parser import Token, as_atom
from gateway.imap.search import Key
from gateway.imap.state import Bad
from gateway.imap.syntax import quote, seq_set

MAX_CONTEXTS = 10
RETURN_OPTIONS = ("MIN", "MAX", "ALL", "COUNT", "SAVE", "UPDATE", "CONTEXT", "PARTIAL")


@dataclass(frozen=True)
class ReturnOptions:
    """SEARCH/SORT RETURN (...): RFC 4731's MIN MAX ALL COUNT, RFC 5182's SAVE, RFC 5267's
    UPDATE, CONTEXT (a hint: nothing to do) and PARTIAL lo:hi (1-based positions)."""

    names: frozenset[str]
    partial: tuple[int, int] | None = None

    def __contains__(self, name: object) -> bool:
        return name in self.names

    @property
    def result(self) -> frozenset[str]:
        """The options that return data in the ESEARCH response."""
        return self.names & {"MIN", "MAX", "ALL", "COUNT", "PARTIAL"}


def parse_return_options(tok: Token, verb: str = "SEARCH") -> ReturnOptions:
    """The RETURN list; an empty list means ALL (RFC 4731). PARTIAL and ALL together are
    refused (RFC 5267 4.4), as is PARTIAL's range unless `n:m` with n, m > 0."""
    if not isinstance(tok, list):
        raise Bad(f"{verb} RETURN expects a list of options")
    names: set[str] = set()
    partial = None
    i = 0
    while i < len(tok):
        name = as_atom(tok[i], f"{verb} RETURN option").upper()
        i += 1
        if name not in RETURN_OPTIONS:
            raise Bad(f"unsupported {verb} RETURN option {name[:20]}")
        if name in names and name in ("UPDATE", "PARTIAL"):
            raise Bad(f"{name} given twice")
        if name == "PARTIAL":
            if i >= len(tok):
                raise Bad("PARTIAL expects a range n:m")
            partial = parse_partial(as_atom(tok[i], "PARTIAL range"))
            i += 1
        names.add(name)
    if partial is not None and "ALL" in names:
        raise Bad("PARTIAL conflicts with ALL")
    if not names - {"CONTEXT"}:
        names.add("ALL")
    return ReturnOptions(frozenset(names), partial)


def parse_partial(text: str) -> tuple[int, int]:
    lo, sep, hi = text.partition(":")
    if not sep or not lo.isdigit() or not hi.isdigit() or int(lo) == 0 or int(hi) == 0:
        raise Bad("PARTIAL expects a range n:m of positive numbers")
    a, b = int(lo), int(hi)
    return (a, b) if a <= b else (b, a)


def partial_data(partial: tuple[int, int], numbers: list[int],
                 write: Callable[[list[int]], str]) -> str:
    """` PARTIAL (lo:hi set)`: the messages at positions lo..hi of the result, NIL if none."""
    lo, hi = partial
    chosen = numbers[lo - 1 : hi]
    return f" PARTIAL ({lo}:{hi} {write(chosen) if chosen else 'NIL'})"


def ordered_set(numbers: list[int]) -> str:
    """[3, 4, 5, 1, 2] -> '3:5,1:2': the order kept, ascending runs as ranges (a SORT
    result's ALL and PARTIAL, RFC 5267 3.2)."""
    out: list[str] = []
    i = 0
    while i < len(numbers):
        j = i
        while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
            j += 1
        out.append(str(numbers[i]) if i == j else f"{numbers[i]}:{numbers[j]}")
        i = j + 1
    return ",".join(out)


@dataclass
class Context:
    """One updating search: its tag, the keys to re-test, and the result as UIDs (in sort
    order for SORT, whose criteria and the messages' sort values are kept)."""

    tag: str
    uid: bool  # UID SEARCH/SORT: the client is told UIDs, else sequence numbers
    keys: list[Key]
    members: list[int]  # UIDs, ascending for SEARCH, in sort order for SORT
    criteria: list[tuple[str, bool]] | None = None  # SORT's (criterion, reverse)
    values: dict[str, dict[int, Any]] = field(default_factory=dict)  # SORT: name -> uid -> key
    everything: bool = False  # keys that need every message re-tested at each change

    def __post_init__(self) -> None:
        self.everything = _position_or_time(self.keys)

    def line(self, removed: list[tuple[int, int]], added: list[tuple[int, int]]) -> str:
        """`* ESEARCH` data for (position, number) pairs removed and added, positions as
        they are when the client applies them in this order."""
        out = f"ESEARCH (TAG {quote(self.tag).decode()})" + (" UID" if self.uid else "")
        if self.criteria is None:  # unordered: position 0, one set each
            if removed:
                out += f" REMOVEFROM (0 {seq_set(sorted(n for _, n in removed))})"
            if added:
                out += f" ADDTO (0 {seq_set(sorted(n for _, n in added))})"
            return out
        for pos, n in removed:
            out += f" REMOVEFROM ({pos} {n})"
        for pos, n in added:
            out += f" ADDTO ({pos} {n})"
        return out


def remove(ctx: Context, gone: Iterable[int], number: Callable[[int], int]) -> str | None:
    """Take `gone` (UIDs) out of the result; the line to send, or None when none was in it.
    `number` gives what the client knows a UID by, before the removal."""
    gone = set(gone)
    if not gone.intersection(ctx.members):
        return None
    positions = [(i + 1, u) for i, u in enumerate(ctx.members) if u in gone]
    ctx.members = [u for u in ctx.members if u not in gone]
    for vals in ctx.values.values():
        for u in gone:
            vals.pop(u, None)
    removed = [(pos, number(u)) for pos, u in reversed(positions)]
    return ctx.line(removed, [])


def apply(ctx: Context, tested: Iterable[int], matched: set[int], mailbox_order: list[int],
          number: Callable[[int], int], order: Callable[[list[int]], list[int]] | None = None
          ) -> str | None:
    """After the messages `tested` (UIDs) were tested again, `matched` those that match:
    update the result and return the line to send (None when nothing changed).
    `mailbox_order`: the mailbox's UIDs ascending; `order(uids)`: the SORT order of `uids`
    (given in mailbox order), for a SORT context."""
    current = set(ctx.members)
    tested = set(tested)
    leaving = (tested & current) - matched
    entering = matched - current
    if not leaving and not entering:
        return None
    removed: list[tuple[int, int]] = []
    if leaving:
        positions = [(i + 1, u) for i, u in enumerate(ctx.members) if u in leaving]
        removed = [(pos, number(u)) for pos, u in reversed(positions)]
        ctx.members = [u for u in ctx.members if u not in leaving]
        for vals in ctx.values.values():
            for u in leaving:
                vals.pop(u, None)
    added: list[tuple[int, int]] = []
    if entering:
        kept = set(ctx.members) | entering
        if ctx.criteria is None or order is None:
            ctx.members = [u for u in mailbox_order if u in kept]
        else:
            ctx.members = order([u for u in mailbox_order if u in kept])
        added = [(i + 1, number(u)) for i, u in enumerate(ctx.members) if u in entering]
    return ctx.line(removed, added)


def _position_or_time(keys: list[Key]) -> bool:
    for k in keys:
        if k.name in ("SEQ", "OLDER", "YOUNGER"):
            return True
        if k.name == "UID" and any(lo == 0 or hi == 0 for lo, hi in k.arg):  # type: ignore[attr-defined]
            return True  # "*": the highest UID, which new mail moves
        if k.sub and _position_or_time(k.sub):
            return True
    return False
