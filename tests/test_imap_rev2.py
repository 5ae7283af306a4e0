"""IMAP4rev2 (RFC 9051) side by side with IMAP4rev1: a client that sends ENABLE IMAP4rev2 gets
rev2's behaviours (Appendix E), one that does not keeps rev1's. Line-level client over TLS."""

from __future__ import annotations

import pytest
from imap_helpers import Raw, running_server
from smtp_helpers import DOCTOR, PASSWORD, setup_gateway

LOGIN = f'LOGIN {DOCTOR} "{PASSWORD}"'


@pytest.fixture
def imap(gateway_home):
    setup_gateway(gateway_home)
    with running_server(gateway_home) as server:
        yield server


def session(server, rev2: bool) -> Raw:
    c = Raw(server)
    caps = c.cmd(LOGIN)[-1]
    assert b"IMAP4rev1" in caps and b"IMAP4rev2" in caps
    if rev2:
        assert c.cmd("ENABLE IMAP4rev2")[0] == b"* ENABLED IMAP4rev2"
    return c


def test_rev2_select_search_and_flags(imap):
    for i in range(3):
        imap.deliver(DOCTOR, f"Subject: m{i}\r\n\r\nx\r\n".encode())
    c = session(imap, rev2=True)
    selected = c.cmd("SELECT INBOX")
    # E.1/6.3.2: no RECENT, no UNSEEN; a LIST response names the mailbox
    assert not any(b"RECENT" in line or b"[UNSEEN" in line for line in selected)
    assert b'* LIST () "/" "INBOX"' in selected
    assert b"* 3 EXISTS" in selected
    # no \Recent flag anywhere
    fetched = c.cmd("FETCH 1:* (FLAGS)")
    assert fetched[:-1] == [b"* 1 FETCH (FLAGS ())", b"* 2 FETCH (FLAGS ())",
                            b"* 3 FETCH (FLAGS ())"]
    assert b"\\Recent" not in b"".join(c.cmd("FETCH 1 (FLAGS UID)"))
    # SEARCH answers with ESEARCH (6.4.4), ALL by default
    assert c.cmd("SEARCH 2:3")[0] == b'* ESEARCH (TAG "t6") ALL 2:3'
    assert c.cmd("UID SEARCH KEYWORD none")[0] == b'* ESEARCH (TAG "t7") UID'
    # STATUS DELETED and SIZE (rev2's base, RFC 8438)
    c.cmd("STORE 1 +FLAGS.SILENT (\\Deleted)")
    status = c.cmd("STATUS INBOX (MESSAGES DELETED SIZE)")[0]
    assert status.startswith(b'* STATUS "INBOX" (MESSAGES 3 DELETED 1 SIZE ')
    # re-SELECT: the previous mailbox is reported CLOSED
    assert b"* OK [CLOSED] previous mailbox closed" in c.cmd("SELECT INBOX")
    # a delivery during the session: EXISTS, no RECENT
    imap.deliver(DOCTOR, b"Subject: late\r\n\r\nx\r\n")
    assert c.cmd("NOOP")[:-1] == [b"* 4 EXISTS"]
    c.close()


def test_rev1_keeps_rev1_behaviour(imap):
    imap.deliver(DOCTOR, b"Subject: m\r\n\r\nx\r\n")
    c = session(imap, rev2=False)
    selected = c.cmd("SELECT INBOX")
    assert b"* 1 RECENT" in selected and not any(s.startswith(b"* LIST") for s in selected)
    assert c.cmd("SEARCH ALL")[0] == b"* SEARCH 1"
    assert c.cmd("FETCH 1 (FLAGS)")[0] == b"* 1 FETCH (FLAGS (\\Recent))"
    c.close()


def test_rev2_mailbox_names_are_utf8(imap):
    """RFC 9051 5.1: rev2 names travel in UTF-8; rev1 clients see modified UTF-7."""
    c = session(imap, rev2=True)
    assert c.cmd('CREATE "Ordonnances reçues & archivées"'.encode())[-1].startswith(b"t3 OK")
    listed = c.cmd('LIST "" "Ordonnances*"')
    name = "Ordonnances reçues & archivées".encode()
    assert listed[0] == b'* LIST (\\HasNoChildren) "/" {%d}\r\n' % len(name) + name
    assert c.cmd('SELECT "Ordonnances reçues & archivées"'.encode())[-1].startswith(b"t5 OK")
    c.close()
    rev1 = session(imap, rev2=False)
    listed = rev1.cmd('LIST "" "Ordonnances*"')
    assert listed[0].endswith(b'"Ordonnances re&AOc-ues &- archiv&AOk-es"')
    rev1.close()


def test_list_special_use_options_and_delete_with_children(imap):
    """RFC 6154 (in IMAP4rev2's base): LIST (SPECIAL-USE) lists only the special-use folders,
    RETURN (SPECIAL-USE) is accepted; DELETE of a folder with children is NO [HASCHILDREN]
    (RFC 9051 7.1)."""
    c = session(imap, rev2=True)
    listed = c.cmd('LIST (SPECIAL-USE) "" "*"')
    assert sorted(listed[:-1]) == [b'* LIST (\\HasNoChildren \\Drafts) "/" "Drafts"',
                                   b'* LIST (\\HasNoChildren \\Sent) "/" "Sent"',
                                   b'* LIST (\\HasNoChildren \\Trash) "/" "Trash"']
    assert b'* LIST (\\HasNoChildren \\Sent) "/" "Sent"' in c.cmd(
        'LIST "" "Sent" RETURN (SPECIAL-USE)')
    c.cmd("CREATE Dossiers/2026")
    assert c.cmd("DELETE Dossiers")[-1].startswith(b"t6 NO [HASCHILDREN]")
    c.close()
