"""NOTIFY (RFC 5465) through the TLS listener: a line-level client that sends nothing hears of
what another session (imaplib) or a delivery does, as STATUS for other mailboxes, as EXISTS /
EXPUNGE / FETCH for the selected one, as LIST for created, renamed, deleted and (un)subscribed
mailboxes; and the command's refusals (BAD for what RFC 5465 forbids, NO [BADEVENT])."""

from __future__ import annotations

import re

import pytest
from imap_helpers import Raw, message, running_server
from smtp_helpers import DOCTOR, PASSWORD

LOGIN = f'LOGIN {DOCTOR} "{PASSWORD}"'


def _client(imap, select: str | None = "INBOX") -> Raw:
    raw = Raw(imap)
    assert _ok(raw.cmd(LOGIN))
    if select:
        assert raw.cmd(f"SELECT {select}")[-1].split()[1] == b"OK"
    return raw


def _ok(lines: list[bytes]) -> bool:
    return lines[-1].split()[1] == b"OK"


def _append(raw: Raw, box: str, data: bytes) -> None:
    assert raw.cmd(b"APPEND %s {%d+}\r\n" % (box.encode(), len(data)) + data)[-1].split()[1] \
        == b"OK"


def _pushed(raw: Raw, until: bytes) -> list[bytes]:
    """Lines the server sends on its own, without a command, up to one starting `until`."""
    out = []
    while True:
        line = raw.response()
        out.append(line)
        if line.startswith(until):
            return out


def _silence(raw: Raw, seconds: float = 2.5) -> bytes:
    """What the server sends within `seconds` of silence (b"" when nothing)."""
    raw.sock.settimeout(seconds)
    try:
        data = raw.buf + raw.sock.recv(65536)
    except TimeoutError:
        data = raw.buf
    finally:
        raw.sock.settimeout(10)
    raw.buf = b""
    return data


def _status(line: bytes) -> dict[str, int]:
    m = re.match(rb'\* STATUS \S+ \((.*)\)$', line)
    assert m, line
    words = m.group(1).decode().split()
    return {k: int(v) for k, v in zip(words[::2], words[1::2], strict=True)}


def test_status_indicator_as_imaptest_checks_it(imap):
    """imaptest's `notify` script: NOTIFY SET STATUS sends each watched mailbox's STATUS
    before the OK (HIGHESTMODSEQ too once FlagChange is asked); without STATUS, none."""
    raw = _client(imap)
    assert b" NOTIFY" in raw.cmd("CAPABILITY")[0]
    assert _ok(raw.cmd("CREATE box2"))
    _append(raw, "box2", message("first"))
    lines = raw.cmd("NOTIFY SET STATUS (mailboxes box2 (MessageNew MessageExpunge))")
    assert len(lines) == 2 and _ok(lines), lines
    status = _status(lines[0])
    assert lines[0].startswith(b'* STATUS "box2" (')
    assert status["MESSAGES"] == 1 and status["UIDNEXT"] == 2 and "UIDVALIDITY" in status
    assert "HIGHESTMODSEQ" not in status
    lines = raw.cmd("NOTIFY SET STATUS (mailboxes box2 (MessageNew MessageExpunge FlagChange))")
    assert "HIGHESTMODSEQ" in _status(lines[0]) and _ok(lines)
    lines = raw.cmd("NOTIFY SET (mailboxes box2 (MessageNew MessageExpunge FlagChange))")
    assert len(lines) == 1 and _ok(lines)
    raw.close()


def test_other_mailboxes_are_told_by_status_without_a_command(imap):
    """PERSONAL: a delivery to INBOX, another session's APPEND, flag change and expunge in
    another mailbox each reach the silent client as one STATUS."""
    raw = _client(imap, select=None)
    assert _ok(raw.cmd("CREATE Archive"))
    lines = raw.cmd("NOTIFY SET (personal (MessageNew MessageExpunge FlagChange))")
    assert len(lines) == 1 and _ok(lines)
    imap.deliver(DOCTOR, message("delivered"))
    line = _pushed(raw, b"* STATUS")[-1]
    assert line.startswith(b'* STATUS "INBOX" (') and _status(line)["MESSAGES"] == 1
    assert _status(line)["UNSEEN"] == 1
    other = imap.connect(DOCTOR, PASSWORD)
    other.append("Archive", "", None, message("kept"))
    line = _pushed(raw, b"* STATUS")[-1]
    assert line.startswith(b'* STATUS "Archive" (')
    before = _status(line)
    assert before["MESSAGES"] == 1 and before["UIDNEXT"] == 2
    other.select("Archive")
    other.store("1", "+FLAGS", "\\Seen")
    after = _status(_pushed(raw, b"* STATUS")[-1])
    assert after["UNSEEN"] == 0 and after["HIGHESTMODSEQ"] > before["HIGHESTMODSEQ"]
    other.store("1", "+FLAGS", "\\Deleted")
    other.expunge()
    lines = _pushed(raw, b'* STATUS "Archive"')
    gone = _status(lines[-1])
    assert gone["MESSAGES"] == 0 and gone["UIDNEXT"] == 2
    assert _silence(raw) == b""  # nothing more happened, nothing more is said
    other.append("Archive", "", None, message("again"))
    lines = raw.cmd("NOOP")  # looks at every watched folder at once (or the push came first)
    assert _ok(lines) and lines[0].startswith(b'* STATUS "Archive" (MESSAGES 1 UIDNEXT 3 ')
    other.logout()
    raw.close()


def test_idle_tells_other_mailboxes_too(imap):
    """IDLE with NOTIFY in force: the watched mailboxes' events come during IDLE as well."""
    raw = _client(imap)
    assert _ok(raw.cmd("CREATE Archive"))
    assert _ok(raw.cmd("NOTIFY SET (selected (MessageNew MessageExpunge))"
                       " (mailboxes Archive (MessageNew MessageExpunge))"))
    raw.send(b"i1 IDLE\r\n")
    assert raw.line().startswith(b"+ ")
    other = imap.connect(DOCTOR, PASSWORD)
    other.append("Archive", "", None, message("kept"))
    assert _pushed(raw, b"* STATUS")[-1].startswith(b'* STATUS "Archive" (MESSAGES 1 ')
    imap.deliver(DOCTOR, message("new"))
    assert _pushed(raw, b"* 1 EXISTS")[-1] == b"* 1 EXISTS"
    raw.send(b"DONE\r\n")
    assert raw.until(b"i1")[-1] == b"i1 OK IDLE terminated"
    other.logout()
    raw.close()


def test_selected_mailbox_events_are_pushed_with_fetch_attributes(imap):
    """SELECTED with MessageNew's fetch attributes: EXISTS then the FETCH, the message left
    unseen; another session's flag change and expunge are pushed at once."""
    raw = _client(imap)
    imap.deliver(DOCTOR, message("one"))
    assert raw.cmd("NOOP")[0] == b"* 1 EXISTS"
    lines = raw.cmd("NOTIFY SET (selected (MessageNew (UID BODY[HEADER.FIELDS (SUBJECT)]"
                    " RFC822.TEXT) MessageExpunge FlagChange))")
    assert len(lines) == 1 and _ok(lines)
    imap.deliver(DOCTOR, message("two"))
    lines = _pushed(raw, b"* 2 FETCH")
    assert b"* 2 EXISTS" in lines
    assert lines[-1].startswith(b"* 2 FETCH (UID 2 BODY[HEADER.FIELDS (SUBJECT)] {")
    assert b"Subject: two" in lines[-1] and b"\\Seen" not in lines[-1]
    assert lines[-1].endswith(b" RFC822.TEXT {10}\r\nBonjour.\r\n)")
    other = imap.connect(DOCTOR, PASSWORD)
    other.select("INBOX")
    _, data = other.fetch("2", "(FLAGS)")
    assert b"\\Seen" not in data[0]  # fetched by the notification without setting \Seen
    other.store("1", "+FLAGS", "\\Flagged")
    line = _pushed(raw, b"* 1 FETCH")[-1]
    assert line == b"* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))"  # IMAP4rev1: \\Recent
    other.store("1", "+FLAGS", "\\Deleted")
    other.expunge()
    lines = _pushed(raw, b"* 1 EXPUNGE")
    assert lines[-1] == b"* 1 EXPUNGE"
    other.logout()
    lines = raw.cmd("FETCH 1 (UID)")
    assert lines[0] == b"* 1 FETCH (UID 2)"
    raw.close()


def test_selected_delayed_keeps_expunges_for_a_command(imap):
    raw = _client(imap)
    imap.deliver(DOCTOR, message("one"))
    imap.deliver(DOCTOR, message("two"))
    assert raw.cmd("NOOP")[0] == b"* 2 EXISTS"
    assert _ok(raw.cmd("NOTIFY SET (selected-delayed (MessageNew MessageExpunge))"))
    other = imap.connect(DOCTOR, PASSWORD)
    other.select("INBOX")
    other.store("1", "+FLAGS", "\\Deleted")
    other.expunge()
    imap.deliver(DOCTOR, message("three"))
    assert _pushed(raw, b"* 3 EXISTS")[-1] == b"* 3 EXISTS"  # arrivals are told at once
    assert b"EXPUNGE" not in _silence(raw)  # the expunge waits
    assert raw.cmd("NOOP")[0] == b"* 1 EXPUNGE"
    other.logout()
    raw.close()


def test_without_a_selected_group_the_selected_mailbox_is_quiet(imap):
    """RFC 5465 3.1, as Dovecot and mox read it: once NOTIFY is in force, the selected mailbox
    is told of only through a SELECTED or SELECTED-DELAYED group; NOTIFY NONE says nothing."""
    raw = _client(imap)
    assert _ok(raw.cmd("NOTIFY SET (inboxes (MessageNew MessageExpunge))"))
    imap.deliver(DOCTOR, message("one"))
    assert _silence(raw) == b""  # INBOX is selected: no STATUS for it
    assert len(lines := raw.cmd("NOOP")) == 1 and _ok(lines)
    assert len(lines := raw.cmd("NOTIFY NONE")) == 1 and _ok(lines)
    assert len(lines := raw.cmd("NOOP")) == 1 and _ok(lines)
    lines = raw.cmd("NOTIFY SET (selected (MessageNew MessageExpunge))")
    # what was held back
    assert lines[:2] == [b"* 1 EXISTS", b"* 1 RECENT"] and len(lines) == 3 and _ok(lines)
    raw.close()


def test_mailbox_names_and_subscriptions_are_told_by_list(imap):
    raw = _client(imap, select=None)
    lines = raw.cmd("NOTIFY SET (subtree Projects (MailboxName SubscriptionChange))")
    assert len(lines) == 1 and _ok(lines)
    other = imap.connect(DOCTOR, PASSWORD)
    other.create("Projects")
    assert _pushed(raw, b"* LIST")[-1] == b'* LIST (\\HasNoChildren) "/" "Projects"'
    other.create("Projects/2026")
    assert _pushed(raw, b"* LIST")[-1] == b'* LIST (\\HasNoChildren) "/" "Projects/2026"'
    other.subscribe("Projects/2026")
    assert _pushed(raw, b"* LIST")[-1] == \
        b'* LIST (\\HasNoChildren \\Subscribed) "/" "Projects/2026"'
    other.rename("Projects/2026", "Projects/Done")  # the subscription follows: one LIST
    assert _pushed(raw, b"* LIST")[-1] == (b'* LIST (\\HasNoChildren \\Subscribed) "/"'
                                           b' "Projects/Done" ("OLDNAME" ("Projects/2026"))')
    other.unsubscribe("Projects/Done")
    assert _pushed(raw, b"* LIST")[-1] == b'* LIST (\\HasNoChildren) "/" "Projects/Done"'
    other.delete("Projects/Done")
    assert _pushed(raw, b"* LIST")[-1] == b'* LIST (\\NonExistent) "/" "Projects/Done"'
    other.create("Elsewhere")  # outside the subtree: nothing
    other.logout()
    assert _silence(raw) == b""
    raw.close()


@pytest.mark.parametrize(("command", "answer"), [
    ("NOTIFY SET (selected (MessageNew))", b"BAD"),  # MessageNew needs MessageExpunge
    ("NOTIFY SET (personal (FlagChange))", b"BAD"),  # FlagChange needs both
    ("NOTIFY SET (selected (MailboxName))", b"BAD"),  # message events only for selected
    ("NOTIFY SET (inboxes (MessageNew (UID) MessageExpunge))", b"BAD"),  # fetch: selected only
    ("NOTIFY SET (selected NONE) (selected-delayed NONE)", b"BAD"),  # one selected group
    ("NOTIFY SET (everything (MessageNew MessageExpunge))", b"BAD"),
    ("NOTIFY SET (personal ())", b"BAD"),
    ("NOTIFY SET", b"BAD"),
    ("NOTIFY SOMETIMES", b"BAD"),
    ("NOTIFY SET (selected (MessageNew (FOO) MessageExpunge))", b"BAD"),
    ("NOTIFY SET (personal (MessageNew MessageExpunge AnnotationChange))",
     b"NO [BADEVENT (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange)]"),
    ("NOTIFY SET (personal (MailboxMetadataChange))", b"NO [BADEVENT"),
    ("NOTIFY SET (personal NONE) (mailboxes (INBOX Sent) (MessageNew MessageExpunge))", b"OK"),
])
def test_notify_refusals(imap, command, answer):
    raw = _client(imap, select=None)
    assert raw.cmd(command)[-1].split(b" ", 1)[1].startswith(answer)
    raw.close()


def test_notify_needs_login(imap):
    raw = Raw(imap)
    assert raw.cmd("NOTIFY NONE")[-1].startswith(b"t1 BAD")
    raw.close()


@pytest.fixture
def pg_imap(gateway_home, pg_dsn):
    """The test gateway on the PostgreSQL backend (a fresh database), its doctor's password
    known."""
    from gateway.cli import main
    from gateway.config import load_config
    from gateway.directory import open_directory

    cfg = gateway_home / "config.toml"
    cfg.write_text(cfg.read_text() + f'\n[storage]\nbackend = "postgresql"\ndsn = "{pg_dsn}"\n')
    assert main(["init", "--demo", "--config", str(cfg)]) == 0
    open_directory(load_config(cfg), actor="test").set_password(DOCTOR, PASSWORD)
    with running_server(gateway_home) as server:
        yield server


def test_notify_on_postgresql(pg_imap):
    """The same watch over the PostgreSQL backend's index: STATUS for another session's APPEND,
    flag change and expunge, LIST for a created and a deleted mailbox."""
    raw = _client(pg_imap, select=None)
    assert _ok(raw.cmd("NOTIFY SET STATUS (personal (MessageNew MessageExpunge FlagChange"
                       " MailboxName))"))
    other = pg_imap.connect(DOCTOR, PASSWORD)
    other.create("Archive")
    assert _pushed(raw, b"* LIST")[-1] == b'* LIST (\\HasNoChildren) "/" "Archive"'
    other.append("Archive", "", None, message("kept"))
    first = _status(_pushed(raw, b'* STATUS "Archive"')[-1])
    assert first["MESSAGES"] == 1 and first["UNSEEN"] == 1
    other.select("Archive")
    other.store("1", "+FLAGS", "\\Seen \\Deleted")
    seen = _status(_pushed(raw, b'* STATUS "Archive"')[-1])
    assert seen["UNSEEN"] == 0 and seen["HIGHESTMODSEQ"] > first["HIGHESTMODSEQ"]
    other.expunge()
    assert _status(_pushed(raw, b'* STATUS "Archive"')[-1])["MESSAGES"] == 0
    other.close()
    other.delete("Archive")
    assert _pushed(raw, b"* LIST")[-1] == b'* LIST (\\NonExistent) "/" "Archive"'
    other.logout()
    raw.close()
