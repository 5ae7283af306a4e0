"""CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267): updating searches (UPDATE, CANCELUPDATE,
NOUPDATE) kept current as this session, another session or a delivery changes the mailbox,
and PARTIAL; through the TLS listener with a line-level client and imaplib."""

from __future__ import annotations

from imap_helpers import Raw
from smtp_helpers import DOCTOR, PASSWORD

LOGIN = f'LOGIN {DOCTOR} "{PASSWORD}"'


def _session(imap, count: int = 6) -> Raw:
    raw = Raw(imap)
    raw.cmd(LOGIN)
    for i in range(1, count + 1):
        data = f"Subject: s{i}\r\nDate: {i} Jan 2026 10:00:00 +0000\r\n\r\nbody {i}\r\n".encode()
        raw.cmd(b"APPEND INBOX {%d+}\r\n" % len(data) + data)
    assert raw.cmd("SELECT INBOX")[-1].startswith(b"t")
    return raw


def _ask(raw: Raw, tag: str, text: str | bytes) -> list[bytes]:
    """Send one command under `tag`; every line up to its tagged answer."""
    raw.send(tag.encode() + b" " + (text.encode() if isinstance(text, str) else text) + b"\r\n")
    return raw.until(tag.encode())


def _esearch(lines: list[bytes]) -> list[bytes]:
    return [x for x in lines if x.startswith(b"* ESEARCH")]


def test_search_update_follows_flags_expunges_and_cancel(imap):
    """imaptest's search-context-update, step by step: what enters and leaves the result is
    told during the command that changed it; an expunged message leaves before its EXPUNGE;
    after CANCELUPDATE nothing more is said."""
    raw = _session(imap)
    assert b"CONTEXT=SEARCH" in raw.cmd("CAPABILITY")[0]
    lines = _ask(raw, "s1", "SEARCH RETURN (UPDATE) BODY body SEEN")
    assert lines[0] == b'* ESEARCH (TAG "s1")' and lines[-1].startswith(b"s1 OK")
    lines = raw.cmd("STORE 1,2,5 +FLAGS (\\Seen)")
    assert _esearch(lines) == [b'* ESEARCH (TAG "s1") ADDTO (0 1:2,5)']
    assert lines.index(_esearch(lines)[0]) < len(lines) - 1  # before the tagged OK
    lines = raw.cmd("STORE 1,2 -FLAGS (\\Seen)")
    assert _esearch(lines) == [b'* ESEARCH (TAG "s1") REMOVEFROM (0 1:2)']
    assert _esearch(raw.cmd("STORE 3:6 +FLAGS.SILENT (\\Deleted)")) == []
    lines = raw.cmd("EXPUNGE")
    assert lines[:5] == [b'* ESEARCH (TAG "s1") REMOVEFROM (0 5)', b"* 6 EXPUNGE",
                         b"* 5 EXPUNGE", b"* 4 EXPUNGE", b"* 3 EXPUNGE"]
    assert _ask(raw, "c1", 'CANCELUPDATE "s1"')[-1] == b"c1 OK CANCELUPDATE completed"
    assert _esearch(raw.cmd("STORE 1 +FLAGS (\\Seen)")) == []
    assert _ask(raw, "c2", 'CANCELUPDATE "s1"')[-1].startswith(b"c2 NO")  # no longer known
    assert _ask(raw, "c3", "CANCELUPDATE s1")[-1].startswith(b"c3 BAD")  # tags are quoted
    raw.close()


def test_uid_search_update_sees_other_sessions_and_deliveries(imap):
    """Changes made elsewhere reach the context at the next command (or during IDLE): ADDTO
    after the EXISTS that announces a new message, REMOVEFROM before the EXPUNGE."""
    raw = _session(imap, 3)
    lines = _ask(raw, "u1", "UID SEARCH RETURN (UPDATE ALL) UNSEEN")
    assert lines[0] == b'* ESEARCH (TAG "u1") UID ALL 1:3'
    other = imap.connect(DOCTOR, PASSWORD)
    other.select("INBOX")
    other.store("2", "+FLAGS", "\\Seen")
    assert _esearch(raw.cmd("NOOP")) == [b'* ESEARCH (TAG "u1") UID REMOVEFROM (0 2)']
    imap.deliver(DOCTOR, b"Subject: new\r\n\r\nfresh\r\n")
    lines = raw.cmd("NOOP")
    assert lines.index(b"* 4 EXISTS") < lines.index(b'* ESEARCH (TAG "u1") UID ADDTO (0 4)')
    other.store("1", "+FLAGS", "\\Deleted")
    other.expunge()
    lines = raw.cmd("NOOP")
    assert lines.index(b'* ESEARCH (TAG "u1") UID REMOVEFROM (0 1)') < \
        lines.index(b"* 1 EXPUNGE")
    # during IDLE too
    raw.send(b"i1 IDLE\r\n")
    assert raw.line().startswith(b"+")
    other.store("1", "-FLAGS", "\\Seen")  # UID 2, now sequence number 1
    seen = [raw.line(), raw.line()]
    assert b'* ESEARCH (TAG "u1") UID ADDTO (0 2)' in seen
    raw.send(b"DONE\r\n")
    assert raw.until(b"i1")[-1].startswith(b"i1 OK")
    other.logout()
    raw.close()


def test_sort_update_gives_positions_in_sort_order(imap):
    """A SORT context's ADDTO and REMOVEFROM name positions in the sorted result."""
    raw = _session(imap, 5)
    raw.cmd("STORE 2,4 +FLAGS (\\Flagged)")
    lines = _ask(raw, "o1", "SORT RETURN (UPDATE ALL) (REVERSE DATE) UTF-8 UNFLAGGED")
    assert lines[0] == b'* ESEARCH (TAG "o1") ALL 5,3,1' and b"CONTEXT=SORT" in \
        raw.cmd("CAPABILITY")[0]
    # 4 joins between 5 and 3 (position 2); 5 leaves from position 1
    lines = raw.cmd("STORE 4 -FLAGS (\\Flagged)")
    assert _esearch(lines) == [b'* ESEARCH (TAG "o1") ADDTO (2 4)']
    lines = raw.cmd("STORE 5,1 +FLAGS (\\Flagged)")
    assert _esearch(lines) == [b'* ESEARCH (TAG "o1") REMOVEFROM (4 1) REMOVEFROM (1 5)']
    lines = raw.cmd("STORE 1:5 -FLAGS (\\Flagged)")
    assert _esearch(lines) == [
        b'* ESEARCH (TAG "o1") ADDTO (1 5) ADDTO (4 2) ADDTO (5 1)']
    # the result is now 5,4,3,2,1: a new message dated last comes first
    data = b"Subject: n\r\nDate: 9 Jan 2026 10:00:00 +0000\r\n\r\nx\r\n"
    lines = raw.cmd(b"APPEND INBOX {%d+}\r\n" % len(data) + data)
    assert _esearch(lines) == [b'* ESEARCH (TAG "o1") ADDTO (1 6)']
    raw.cmd("UNSELECT")  # closing the mailbox ends its contexts
    raw.cmd("SELECT INBOX")
    assert _ask(raw, "c1", 'CANCELUPDATE "o1"')[-1].startswith(b"c1 NO")
    raw.close()


def test_partial_and_refusals(imap):
    """PARTIAL (RFC 5267 4.4) as imaptest's search-partial and sort-partial expect it, and
    what is refused: a bad range, PARTIAL with ALL, a tag already updating, the 11th
    updating search (kept unanswered: NO [NOUPDATE])."""
    raw = _session(imap, 5)
    for rng, data in (("1:1", "1:1 1"), ("2:4", "2:4 2:4"), ("4:2", "2:4 2:4"),
                      ("1:6", "1:6 1:5"), ("7:9", "7:9 NIL")):
        lines = raw.cmd(f"SEARCH RETURN (PARTIAL {rng}) ALL")
        assert lines[0].endswith(f"PARTIAL ({data})".encode()), lines
    for criteria, rng, data in (("(ARRIVAL)", "2:4", "2:4 2:4"),
                                ("(REVERSE DATE)", "2:4", "2:4 4,3,2"),
                                ("(REVERSE DATE)", "1:6", "1:6 5,4,3,2,1"),
                                ("(SUBJECT)", "4:5", "4:5 4:5")):
        lines = raw.cmd(f"SORT RETURN (PARTIAL {rng}) {criteria} US-ASCII ALL")
        assert lines[0].endswith(f"PARTIAL ({data})".encode()), lines
    lines = raw.cmd("UID SEARCH RETURN (PARTIAL 2:3 COUNT MIN) 1:4")
    assert lines[0].endswith(b"UID MIN 1 PARTIAL (2:3 2:3) COUNT 4"), lines
    for bad in ("SEARCH RETURN (PARTIAL 1) ALL", "SEARCH RETURN (PARTIAL 1:*) ALL",
                "SEARCH RETURN (PARTIAL *:1) ALL", "SEARCH RETURN (PARTIAL 0:3) ALL",
                "SEARCH RETURN (PARTIAL 1:2 ALL) ALL", "SORT RETURN (PARTIAL 1) (DATE) UTF-8 ALL",
                "SEARCH RETURN (UPDATE UPDATE) ALL", "SEARCH RETURN (PARTIAL) ALL"):
        assert raw.cmd(bad)[-1].split()[1] == b"BAD", bad
    raw.send(b"u0 SEARCH RETURN (UPDATE) ALL\r\n")
    raw.until(b"u0")
    raw.send(b"u0 SEARCH RETURN (UPDATE) ALL\r\n")  # that tag is taken
    assert raw.until(b"u0")[-1].startswith(b"u0 BAD")
    for i in range(1, 10):
        raw.send(b"u%d SEARCH RETURN (UPDATE COUNT) ALL\r\n" % i)
        assert raw.until(b"u%d" % i)[0] == b'* ESEARCH (TAG "u%d") COUNT 5' % i
    raw.send(b"u10 SEARCH RETURN (UPDATE COUNT) ALL\r\n")
    lines = raw.until(b"u10")
    assert lines[0] == b'* ESEARCH (TAG "u10") COUNT 5'
    assert lines[1].startswith(b'* NO [NOUPDATE "u10"]') and lines[2].startswith(b"u10 OK")
    raw.close()


def test_imaplib_sees_context_updates(imap):
    """A stock client (imaplib) reads the ESEARCH updates as ordinary untagged data."""
    client = imap.connect(DOCTOR, PASSWORD)
    for i in range(3):
        client.append("INBOX", None, None, f"Subject: {i}\r\n\r\nx\r\n".encode())
    client.select("INBOX")
    typ, data = client._simple_command("SEARCH", "RETURN", "(UPDATE COUNT)", "UNSEEN")
    assert typ == "OK"
    client.store("1:2", "+FLAGS", "\\Seen")
    updates = client.untagged_responses.get("ESEARCH", [])
    assert any(b"REMOVEFROM (0 1:2)" in u for u in updates), updates
    client.logout()
