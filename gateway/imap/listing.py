"""LIST and LSUB (RFC 3501 6.3.8-9), with LIST-EXTENDED (RFC 5258) and LIST-STATUS (RFC 5819).

LIST-EXTENDED adds selection options (SUBSCRIBED, REMOTE, RECURSIVEMATCH), return options
(SUBSCRIBED, CHILDREN, and STATUS from LIST-STATUS) and several patterns in one command.
Subscriptions outlive their folders (RFC 3501 6.3.6): a subscribed name whose folder is gone
is listed \\NonExistent by LIST (SUBSCRIBED) and \\Noselect by LSUB.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from gateway.imap import utf7
from gateway.imap.mailboxes import MailboxCommands, _status_items
from gateway.imap.parser import Atom, Token, as_atom, as_list, as_text
from gateway.imap.state import Bad
from gateway.store.interfaces import DELIMITER

# SPECIAL-USE: RFC 6154 (part of IMAP4rev2's base)
SELECTION_OPTIONS = {"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"}


class ListCommands(MailboxCommands):
    """LIST and LSUB."""

    async def cmd_list(self, tag: str, args: list[Token], lsub: bool = False) -> None:
        verb = "LSUB" if lsub else "LIST"
        assert self.store is not None
        args = list(args)
        extended = False
        selection: set[str] = set()
        returns: set[str] = set()
        status: list[str] | None = None
        if not lsub and args and isinstance(args[0], list):
            extended = True
            selection = {as_atom(o, "selection option").upper()
                         for o in as_list(args.pop(0), "selection options")}
            unknown = selection - SELECTION_OPTIONS
            if unknown:
                raise Bad(f"unknown LIST selection option {sorted(unknown)[0][:20]}")
            if "RECURSIVEMATCH" in selection and not selection - {"RECURSIVEMATCH", "REMOTE"}:
                raise Bad("RECURSIVEMATCH needs another selection option")
        if not lsub and len(args) == 4 and isinstance(args[2], Atom) \
                and args[2].upper() == "RETURN":
            extended = True
            returns, status = _return_options(args.pop(), self.rev2)
            args.pop()
        if len(args) != 2:
            raise Bad(f"{verb} expects a reference and a mailbox pattern")
        ref = _decoded(as_text(args[0], "reference"), self.rev2)
        if isinstance(args[1], list) and not lsub:
            extended = True
            patterns = [_decoded(as_text(p, "pattern"), self.rev2) for p in args[1]]
        else:
            patterns = [_decoded(as_text(args[1], "pattern"), self.rev2)]
        if patterns == [""] and not extended:  # the hierarchy delimiter (RFC 3501 6.3.8)
            if not lsub:
                self.send(b'* LIST (\\Noselect) "' + DELIMITER.encode() + b'" ""')
            self.tagged(tag, "OK", f"{verb} completed")
            return
        rxs = [_pattern(_join(ref, p)) for p in patterns if p]

        def match(name: str) -> bool:
            return any(rx.match(name) for rx in rxs)

        folders = {f.name: f for f in self.store.folders()}
        subscribed = self.store.subscriptions()
        if lsub:
            # RFC 3501 6.3.9: when "%" stops short of a subscribed "foo/bar" and "foo" is not
            # subscribed, LSUB returns "foo" flagged \Noselect.
            cut = _parents_matched(subscribed, match, unsubscribed_only=True)
            chosen = {n for n in subscribed if match(n)} | cut
            childinfo: set[str] = set()
        elif "SUBSCRIBED" in selection:
            chosen = {n for n in subscribed if match(n)}
            childinfo = set()
            if "RECURSIVEMATCH" in selection:  # RFC 5258 3.5: CHILDINFO ("SUBSCRIBED")
                childinfo = _parents_matched(subscribed, match, unsubscribed_only=False)
                chosen |= childinfo
        else:
            chosen = {n for n in folders if match(n)}
            childinfo = set()
        if "SPECIAL-USE" in selection:  # RFC 6154 5.2: only the special-use mailboxes
            chosen = {n for n in chosen if n in folders and folders[n].special_use}
        show_subscribed = "SUBSCRIBED" in selection or "SUBSCRIBED" in returns
        for name in sorted(chosen):
            folder = folders.get(name)
            attrs = []
            if folder is None:
                attrs.append("\\Noselect" if lsub else "\\NonExistent")
            else:
                if lsub and name not in subscribed:
                    attrs.append("\\Noselect")
                prefix = name + DELIMITER
                attrs.append("\\HasChildren" if any(n.startswith(prefix) for n in folders)
                             else "\\HasNoChildren")
                if folder.special_use:
                    attrs.append(folder.special_use)
            if show_subscribed and name in subscribed:
                attrs.append("\\Subscribed")
            line = f'* {verb} ({" ".join(attrs)}) "{DELIMITER}" '.encode() + self._wire_name(name)
            if name in childinfo:
                line += b' (CHILDINFO ("SUBSCRIBED"))'
            self.send(line)
            if status is not None and folder is not None:
                await self._adopt_new(folder)
                self.send(self._status_line(folder, status))
        self.tagged(tag, "OK", f"{verb} completed")

    async def cmd_lsub(self, tag: str, args: list[Token]) -> None:
        await self.cmd_list(tag, args, lsub=True)


def _return_options(tok: Token, rev2: bool) -> tuple[set[str], list[str] | None]:
    """LIST ... RETURN (SUBSCRIBED CHILDREN STATUS (items))."""
    toks = as_list(tok, "LIST return options")
    out: set[str] = set()
    status = None
    i = 0
    while i < len(toks):
        name = as_atom(toks[i], "LIST return option").upper()
        if name == "STATUS" and i + 1 < len(toks):
            status = _status_items(toks[i + 1], rev2)
            i += 2
            continue
        if name not in ("SUBSCRIBED", "CHILDREN", "SPECIAL-USE"):  # special use: always shown
            raise Bad(f"unknown LIST return option {name[:20]}")
        out.add(name)
        i += 1
    return out, status


def _decoded(text: str, utf8: bool) -> str:
    if utf8:  # IMAP4rev2: names and patterns are UTF-8 already
        return text
    try:
        return utf7.decode(text)
    except ValueError as exc:
        raise Bad(str(exc)) from None


def _join(ref: str, pattern: str) -> str:
    """The reference and the pattern as one pattern (RFC 3501 6.3.8), as Dovecot reads them:
    concatenated, so `LIST "INBOX" *` lists INBOX and what lies below it (curl's
    imaps://host/INBOX sends that) and `LIST "A/" %` the children of A. A pattern starting
    with the delimiter after a reference ending with it does not double it."""
    if ref.endswith(DELIMITER) and pattern.startswith(DELIMITER):
        return ref + pattern[1:]
    return ref + pattern


def _parents_matched(
    subscribed: set[str], match: Callable[[str], bool], *, unsubscribed_only: bool
) -> set[str]:
    """Parents the patterns match of subscribed names they do not match: LSUB's \\Noselect
    parents (the nearest, when not subscribed themselves) and LIST-EXTENDED's CHILDINFO."""
    out = set()
    for name in subscribed:
        if match(name):
            continue
        parts = name.split(DELIMITER)
        for i in range(len(parts) - 1, 0, -1):
            parent = DELIMITER.join(parts[:i])
            if match(parent):
                if not (unsubscribed_only and parent in subscribed):
                    out.add(parent)
                if unsubscribed_only:
                    break
    return out


def _pattern(pattern: str) -> re.Pattern[str]:
    out = []
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "%":
            out.append(f"[^{re.escape(DELIMITER)}]*")
        else:
            out.append(re.escape(ch))
    rx = "".join(out)
    # INBOX is case-insensitive, so is a pattern naming it.
    if pattern.upper().startswith("INBOX"):
        return re.compile(f"(?i:{rx[:5]}){rx[5:]}\\Z", re.S)
    return re.compile(rx + r"\Z", re.S)
