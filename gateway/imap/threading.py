"""SORT ordering and THREAD (RFC 5256: ORDEREDSUBJECT and REFERENCES), pure functions over the
keys the index keeps (`gateway.store.sortkeys.SortKeys`): no message is opened.

Every message is an `Item`: its number in the answer (sequence number or UID), its sequence
number (the final tie-break of SORT and of equal sent dates), its INTERNALDATE and size, and
its keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.store.sortkeys import SortKeys

SORT_CRITERIA = ("ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM",
                 "DISPLAYTO")
THREAD_ALGORITHMS = ("ORDEREDSUBJECT", "REFERENCES")


@dataclass(frozen=True)
class Item:
    number: int  # what the answer shows: sequence number or UID
    seq: int
    internaldate: int
    size: int
    keys: SortKeys


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


class _Node:
    """A thread container (plain class with slots: a THREAD of a big folder makes 100,000)."""

    __slots__ = ("item", "parent", "children")

    def __init__(self, item: Item | None = None) -> None:
        self.item = item  # None: a dummy (a message referred to but not in the set)
        self.parent: _Node | None = None
        self.children: list[_Node] = []

    def first(self) -> Item | None:
        """The item that dates and names the node: itself, else its first child's."""
        node: _Node | None = self
        while node is not None and node.item is None:
            node = node.children[0] if node.children else None
        return node.item if node is not None else None

    def has_descendant(self, other: _Node) -> bool:
        stack = list(self.children)
        while stack:
            n = stack.pop()
            if n is other:
                return True
            stack.extend(n.children)
        return False


def _link(parent: _Node, child: _Node) -> None:
    if child.parent is not None:
        child.parent.children.remove(child)
    child.parent = parent
    parent.children.append(child)


def _date_key(node: _Node) -> tuple[int, int]:
    """Sent date, then sequence number; a dummy takes its earliest child's (the first once
    its children are sorted: RFC 5256 4 steps 5 and 6)."""
    item = node.item
    if item is not None:
        return (item.keys.sent, item.seq)
    return min((_date_key(c) for c in node.children), default=(0, 0))


def orderedsubject(items: Sequence[Item]) -> list[_Node]:
    """RFC 5256 ORDEREDSUBJECT: messages grouped by base subject; in each group the earliest
    is the parent of the others (in sent-date order); groups in order of their first."""
    ordered = sorted(items, key=lambda i: (i.keys.subject, i.keys.sent, i.seq))
    roots: list[_Node] = []
    last: _Node | None = None
    for item in ordered:
        node = _Node(item)
        if last is not None and last.item is not None and \
                last.item.keys.subject == item.keys.subject:
            _link(last, node)
        else:
            roots.append(node)
            last = node
    roots.sort(key=_date_key)
    return roots


def orderedsubject_text(rows: Sequence[tuple[int, int, str, int]]) -> str:
    """ORDEREDSUBJECT straight to the THREAD response's data, for big folders: `rows` are
    (number, sequence number, base subject, sent date). Same result as
    format_threads(orderedsubject(...)), without a node per message."""
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


def references(items: Sequence[Item]) -> list[_Node]:
    """RFC 5256 REFERENCES (the algorithm of section 4, steps 1 to 6)."""
    table: dict[str, _Node] = {}
    unique = 0
    nodes: list[_Node] = []
    for item in sorted(items, key=lambda i: i.seq):
        # 1.A: the message's own container (a duplicate Message-ID gets a unique one)
        mid = item.keys.message_id
        node = table.get(mid) if mid else None
        if node is None or node.item is not None:
            node = _Node(item)
            if mid and mid not in table:
                table[mid] = node
            else:
                unique += 1
                table[f"\0{unique}"] = node
        else:
            node.item = item
        nodes.append(node)
        # 1.A: link the references in order, never re-parenting nor making a loop
        prev: _Node | None = None
        for ref in item.keys.references:
            ref_node = table.get(ref)
            if ref_node is None:
                ref_node = table[ref] = _Node()
            if prev is not None and ref_node.parent is None and ref_node is not prev \
                    and not ref_node.has_descendant(prev):
                _link(prev, ref_node)
            prev = ref_node
        # 1.B: the last reference (or none) is the message's parent, replacing a link other
        # messages' references made, unless that would make a loop
        if prev is None:
            if node.parent is not None:
                node.parent.children.remove(node)
                node.parent = None
        elif prev is not node and not node.has_descendant(prev):
            _link(prev, node)
    # 2: the root set
    roots = [n for n in table.values() if n.parent is None]
    # 4: prune dummies
    roots = _prune(roots, top=True)
    for r in roots:
        r.parent = None
    # 5: sort the roots by date (a dummy by its earliest child), then merge them by subject
    roots.sort(key=_date_key)
    roots = _merge_subjects(roots)
    # 6: sort every set of siblings (children before parents), roots last
    for r in roots:
        _sort_tree(r)
    roots.sort(key=_date_key)
    return roots


def _prune(nodes: list[_Node], *, top: bool) -> list[_Node]:
    out: list[_Node] = []
    for n in nodes:
        n.children = _prune(n.children, top=False)
        for c in n.children:
            c.parent = n
        if n.item is not None:
            out.append(n)
        elif not n.children:
            continue  # 4.A: a dummy without children goes
        elif top and len(n.children) > 1:
            out.append(n)  # 4.B: a root dummy with several children stays
        else:
            out.extend(n.children)  # 4.B: its children take its place
    return out


def _sort_tree(root: _Node) -> None:
    stack = [root]  # iterative: a long reply chain is a deep tree
    while stack:
        node = stack.pop()
        children = node.children
        if len(children) > 1:
            children.sort(key=_date_key)
        stack.extend(children)


def _merge_subjects(roots: list[_Node]) -> list[_Node]:
    def subject(n: _Node) -> str:
        item = n.first()
        return item.keys.subject if item is not None else ""

    def is_reply(n: _Node) -> bool:
        return n.item is not None and n.item.keys.reply

    table: dict[str, _Node] = {}
    for r in roots:  # 5.B
        s = subject(r)
        if not s:
            continue
        old = table.get(s)
        if old is None or (old.item is not None and r.item is None) or \
                (is_reply(old) and not is_reply(r) and r.item is not None):
            table[s] = r
    out: list[_Node] = []
    removed: set[int] = set()
    replaced: dict[int, _Node] = {}
    for r in roots:  # 5.C
        s = subject(r)
        other = table.get(s) if s else None
        if other is None or other is r:
            out.append(r)
            continue
        if other.item is None and r.item is None:
            for c in list(r.children):
                _link(other, c)
            removed.add(id(r))
        elif other.item is None or r.item is not None and is_reply(r) and not is_reply(other):
            _link(other, r)
            removed.add(id(r))
        else:
            dummy = _Node()
            replaced[id(other)] = dummy
            _link(dummy, other)
            _link(dummy, r)
            table[s] = dummy
            removed.add(id(r))
        out.append(r)
    result = []
    for r in out:
        if id(r) in removed:
            continue
        result.append(replaced.get(id(r), r))
    for r in result:
        r.parent = None
    return result


def format_threads(roots: Sequence[_Node]) -> str:
    """The THREAD response's data: "(1 2)(3 (4)(5))" (RFC 5256 5, thread-list)."""
    return "".join(f"({_members(r)})" for r in roots)


def _members(node: _Node) -> str:
    parts: list[str] = []
    n = node
    while True:
        if n.item is not None:
            parts.append(str(n.item.number))
        if len(n.children) == 1:
            n = n.children[0]
            continue
        if n.children:
            nested = "".join(f"({_members(c)})" for c in n.children)
            parts.append(nested)
        return " ".join(parts)
