"""SORT ordering and THREAD (RFC 5256: ORDEREDSUBJECT and REFERENCES), pure functions over the
keys the index keeps (`gateway.store.sortkeys.SortKeys`): no message is opened.

SORT compares one index column per criterion (`MailStore.sort_values`); ORDEREDSUBJECT reads
the base subject and sent date, REFERENCES a `ThreadRow` per message (`MailStore.thread_keys`).
Each message's number in the answer is its sequence number or UID; its sequence number is the
final tie-break of SORT and of equal sent dates.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from typing import Any

SORT_CRITERIA = ("ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM",
                 "DISPLAYTO")
THREAD_ALGORITHMS = ("ORDEREDSUBJECT", "REFERENCES")


# What each SORT criterion compares: a SortKeys field, or the INTERNALDATE / RFC822.SIZE.
SORT_FIELDS = {
    "ARRIVAL": "internaldate", "SIZE": "size", "DATE": "sent", "SUBJECT": "subject",
    "FROM": "from_addr", "TO": "to_addr", "CC": "cc_addr", "DISPLAYFROM": "display_from",
    "DISPLAYTO": "display_to",
}


def sort(uids: Sequence[int], criteria: Sequence[tuple[str, bool]],
         values: dict[str, dict[int, Any]]) -> list[int]:
    """`uids` in sequence order, sorted by `criteria` ((name, reverse) in order of precedence)
    where `values[name][uid]` is the message's key. Equal messages stay in sequence order,
    REVERSE or not (RFC 5256 3: the sequence number is the final, ascending, key)."""
    out = list(uids)
    # Stable sorts from the least significant criterion to the most: each REVERSE applies to
    # its own key only (sort(reverse=True) keeps equal items in their order).
    for name, reverse in reversed(criteria):
        out.sort(key=values[name].__getitem__, reverse=reverse)
    return out


# --- THREAD -------------------------------------------------------------------------------


def orderedsubject_text(rows: Sequence[tuple[int, int, str, int]]) -> str:
    """ORDEREDSUBJECT straight to the THREAD response's data, for big folders: `rows` are
    (number, sequence number, base subject, sent date): messages grouped by base subject, in
    each group the earliest the parent of the others (in sent-date order), groups in order
    of their first."""
    ordered = sorted(rows, key=lambda r: (r[2], r[3], r[1]))
    threads: list[tuple[tuple[int, int], str]] = []
    i = 0
    n = len(ordered)
    while i < n:
        j = i + 1
        subject = ordered[i][2]
        while j < n and ordered[j][2] == subject:
            j += 1
        first = ordered[i]
        if j - i == 1:
            text = f"({first[0]})"
        elif j - i == 2:
            text = f"({first[0]} {ordered[i + 1][0]})"
        else:
            text = f"({first[0]} " + "".join(f"({r[0]})" for r in ordered[i + 1 : j]) + ")"
        threads.append(((first[3], first[1]), text))
        i = j
    threads.sort(key=lambda t: t[0])
    return "".join(text for _, text in threads)


# THREAD=REFERENCES over integer arrays: a 100,000-message folder is 100,000 rows, and a
# Python object (with its list of children) per container made the algorithm cost 1.5-2.5 s,
# mostly in allocating them and in the garbage collector walking them. Here a container is
# an index into flat lists (its parent, its message, its children only when it has some),
# Message-IDs become integers once (one dict lookup per reference), loops are checked by
# walking up the parents (a few steps) instead of down a subtree, and nothing recurses: a
# hostile chain of thousands of References cannot reach Python's recursion limit.


# What REFERENCES reads of each message, as the index gives it (`MailStore.thread_keys`):
# (uid, sent date, base subject casemapped, reply?, Message-ID, References space-separated).
ThreadRow = tuple[int, int, str, int, str, str]


def references(numbers: Sequence[int], rows: Sequence[ThreadRow]) -> str:
    """RFC 5256 REFERENCES (section 4, steps 1 to 6) straight to the THREAD response's data.
    `rows` in sequence order (the order is the final tie-break), `numbers` what the answer
    shows for each (sequence numbers or UIDs)."""
    if not rows:
        return ""
    gc_was_on = gc.isenabled()
    gc.disable()  # ~300,000 small allocations, no cycle among them: no collection needed
    try:
        t = _Containers(rows)
        t.link_all()
        roots = t.prune([n for n, p in enumerate(t.parent) if p < 0])  # steps 2 to 4
        roots.sort(key=t.date_key)  # 5.A
        roots = t.merge_subjects(roots)  # 5.B, 5.C
        t.sort_siblings(roots)  # 6
        return t.format(roots, numbers)
    finally:
        if gc_was_on:
            gc.enable()


class _Containers:
    """The thread containers as parallel lists indexed by container number. A container is
    a message's (`msg` >= 0: its row) or a dummy (-1) for a message referred to but absent."""

    def __init__(self, rows: Sequence[ThreadRow]) -> None:
        self.rows = rows
        self.parent: list[int] = []
        self.kids: list[list[int] | None] = []
        self.msg: list[int] = []
        # (sent date, position in sequence order) as one integer, ordered the same
        self.key = [(r[1] << 32) + i for i, r in enumerate(rows)]

    def new(self, msg: int) -> int:
        self.parent.append(-1)
        self.kids.append(None)
        self.msg.append(msg)
        return len(self.msg) - 1

    def ancestor_or_self(self, a: int, b: int) -> bool:
        """Is `a` the container `b` or above it? (Linking `b` under `a`'s descendant would
        make a loop.)"""
        parent = self.parent
        while b >= 0:
            if b == a:
                return True
            b = parent[b]
        return False

    def link(self, parent: int, child: int) -> None:
        old = self.parent[child]
        if old >= 0:
            self.kids[old].remove(child)  # type: ignore[union-attr]
        self.parent[child] = parent
        kids = self.kids[parent]
        if kids is None:
            self.kids[parent] = [child]
        else:
            kids.append(child)

    def link_all(self) -> None:
        """Step 1: each message's container, and the links its references imply."""
        ids: dict[str, int] = {}
        parent, kids, msg = self.parent, self.kids, self.msg
        ancestor_or_self, link = self.ancestor_or_self, self.link
        for m, row in enumerate(self.rows):
            mid = row[4]
            node = ids.get(mid, -1) if mid else -1
            if node < 0 or msg[node] >= 0:  # 1.A: new, or a duplicate Message-ID: its own
                node = len(msg)
                parent.append(-1)
                kids.append(None)
                msg.append(m)
                if mid and mid not in ids:
                    ids[mid] = node
            else:
                msg[node] = m
            # 1.A: link the references in order, never re-parenting nor making a loop
            prev = -1
            if row[5]:
                for ref in row[5].split():
                    r = ids.get(ref, -1)
                    if r < 0:
                        r = ids[ref] = len(msg)
                        parent.append(-1)
                        kids.append(None)
                        msg.append(-1)
                    if prev >= 0 and parent[r] < 0 and not ancestor_or_self(r, prev):
                        link(prev, r)
                    prev = r
            # 1.B: the last reference (or none) is the message's parent, replacing a link
            # other messages' references made, unless that would make a loop
            if prev < 0:
                old = parent[node]
                if old >= 0:
                    kids[old].remove(node)  # type: ignore[union-attr]
                    parent[node] = -1
            elif not ancestor_or_self(node, prev):
                link(prev, node)

    def prune(self, roots: list[int]) -> list[int]:
        """Step 4: dummies without children go; a dummy's children take its place, except
        at the top when there are several of them (4.A, 4.B). Children before parents."""
        kids, msg = self.kids, self.msg
        order: list[int] = []
        stack = list(roots)
        while stack:
            n = stack.pop()
            order.append(n)
            if kids[n]:
                stack.extend(kids[n])  # type: ignore[arg-type]
        for n in reversed(order):  # every container after all of its descendants
            children = kids[n]
            if not children:
                continue
            pruned: list[int] = []
            for c in children:
                if msg[c] >= 0:
                    pruned.append(c)
                elif kids[c]:
                    pruned.extend(kids[c])  # type: ignore[arg-type]
            for c in pruned:
                self.parent[c] = n
            kids[n] = pruned or None
        out: list[int] = []
        for r in roots:
            if msg[r] >= 0:
                out.append(r)
            elif kids[r]:
                if len(kids[r]) > 1:  # type: ignore[arg-type]
                    out.append(r)
                else:
                    out.extend(kids[r])  # type: ignore[arg-type]
        for r in out:
            self.parent[r] = -1
        return out

    def date_key(self, n: int) -> int:
        """Sent date, then sequence number; a dummy takes its earliest child's."""
        m = self.msg[n]
        if m >= 0:
            return self.key[m]
        return min((self.date_key(c) for c in self.kids[n] or ()), default=0)

    def subject(self, n: int) -> str:
        """The base subject of a container: its message's, else its first child's."""
        while self.msg[n] < 0:
            kids = self.kids[n]
            if not kids:
                return ""
            n = kids[0]
        return self.rows[self.msg[n]][2]

    def is_reply(self, n: int) -> bool:
        m = self.msg[n]
        return m >= 0 and bool(self.rows[m][3])

    def merge_subjects(self, roots: list[int]) -> list[int]:
        """Step 5.B and 5.C: roots of the same base subject gathered."""
        msg = self.msg
        subjects = [self.subject(r) for r in roots]
        table: dict[str, int] = {}
        for r, s in zip(roots, subjects, strict=True):  # 5.B
            if not s:
                continue
            old = table.get(s)
            if old is None or (msg[old] >= 0 and msg[r] < 0) or \
                    (self.is_reply(old) and not self.is_reply(r) and msg[r] >= 0):
                table[s] = r
        out: list[int] = []
        removed: set[int] = set()
        replaced: dict[int, int] = {}
        for r in roots:  # 5.C
            s = self.subject(r)
            other = table.get(s, -1) if s else -1
            if other < 0 or other == r:
                out.append(r)
                continue
            if msg[other] < 0 and msg[r] < 0:
                for c in list(self.kids[r] or ()):
                    self.link(other, c)
            elif msg[other] < 0 or (msg[r] >= 0 and self.is_reply(r)
                                    and not self.is_reply(other)):
                self.link(other, r)
            else:
                dummy = self.new(-1)
                replaced[other] = dummy
                self.link(dummy, other)
                self.link(dummy, r)
                table[s] = dummy
            removed.add(r)
            out.append(r)
        result = [replaced.get(r, r) for r in out if r not in removed]
        for r in result:
            self.parent[r] = -1
        return result

    def sort_siblings(self, roots: list[int]) -> None:
        """Step 6: every set of siblings by date (a dummy by its earliest child), then the
        roots."""
        kids = self.kids
        stack = list(roots)
        while stack:
            children = kids[stack.pop()]
            if children:
                if len(children) > 1:
                    children.sort(key=self.date_key)
                stack.extend(children)
        roots.sort(key=self.date_key)

    def format(self, roots: list[int], numbers: Sequence[int]) -> str:
        """The thread-list (RFC 5256 5): "(1 2)(3 (4)(5))"; a chain of only children is one
        run of numbers, a branching a list of parenthesised threads."""
        kids, msg = self.kids, self.msg
        out: list[str] = []
        close = -1
        stack = list(reversed(roots))
        while stack:
            n = stack.pop()
            if n == close:
                out.append(")")
                continue
            run: list[str] = []
            while True:
                m = msg[n]
                if m >= 0:
                    run.append(str(numbers[m]))
                children = kids[n]
                if children and len(children) == 1:
                    n = children[0]
                    continue
                break
            out.append("(" + " ".join(run))
            if children:
                if run:
                    out.append(" ")
                stack.append(close)
                stack.extend(reversed(children))
            else:
                out.append(")")
        return "".join(out)
