"""IMAP4rev2 (RFC 9051) side by side with IMAP4rev1: a client that sends ENABLE IMAP4rev2 gets
rev2's behaviours, one that does not keeps rev1's. Line-level client over TLS.

RFC 9051 Appendix E (changes from RFC 3501), item by item, against what the gateway does
(test: the test here or elsewhere that checks it):

1. Folded in: NAMESPACE, UNSELECT, UIDPLUS, ESEARCH, SEARCHRES, ENABLE, IDLE, SASL-IR,
   LIST-EXTENDED, LIST-STATUS, MOVE, LITERAL- (we offer LITERAL+, its superset); RFC 4466's
   syntax, RFC 5530's response codes, BINARY's FETCH side, SPECIAL-USE's attributes. All
   offered to rev1 and rev2 clients alike (test_imap_server, test_imap_extensions,
   test_imap_rfc_details; SPECIAL-USE: test_list_special_use_options_and_delete_with_children).
2. IMAP4rev2 in CAPABILITY, beside IMAP4rev1; ENABLE IMAP4rev2 switches the session
   (`session()` below).
3. STATUS SIZE and DELETED (test_rev2_select_search_and_flags).
4. SEARCH answers ESEARCH in rev2 (test_rev2_select_search_and_flags); rev1 keeps SEARCH.
5. UTF-8 mailbox names, no modified UTF-7 for rev2 clients (test_rev2_mailbox_names_are_utf8);
   names are kept in NFC (Net-Unicode, 5.1): a name given otherwise is normalised and told back
   with OLDNAME in SELECT's and CREATE's LIST (test_rev2_oldname_and_recent_refused); C0/C1
   controls, DEL, U+2028 and U+2029 are refused in names.
6. CHECK removed: still answered (it is NOOP's twin, and rev1 clients use it); harmless.
7. RFC822, RFC822.HEADER, RFC822.TEXT deprecated: still served (rev1 clients use them).
8. LSUB deprecated: still served; LIST (SUBSCRIBED) is the rev2 way (test_imap_server).
9. IDLE may report other mailboxes' changes: only with NOTIFY, which is not offered.
10. Unsolicited FETCH responses always carry UID (test_imap_server: other sessions' flags).
11. Unknown response codes are the client's concern: nothing to do on the server.
12. UTF-8 in human-readable text after ENABLE IMAP4rev2: ours is ASCII.
13. TLS: implicit TLS (993-style) and STARTTLS, TLS 1.2+, certificates from the gateway's CA
    (test_pki_tls, test_imap_connection).
14. ESEARCH's extensible result syntax: PARTIAL and RFC 5267's ADDTO/REMOVEFROM use it
    (test_imap_context).
15. [CLOSED] when a SELECT closes the previous mailbox (test_rev2_select_search_and_flags).
16. BODYSTRUCTURE SHOULD decode RFC 2231 parameter continuations: not done — parameters are
    shown as the message has them (Dovecot 2.3 does the same, and imaptest's fetch tests
    expect it); BODYSTRUCTURE is computed once and cached for both protocol versions.
17. \\Recent removed: no \\Recent flag, no RECENT response at SELECT nor after new mail, no
    UNSEEN response code at SELECT (test_rev2_select_search_and_flags); STATUS RECENT and the
    RECENT, NEW and OLD search keys are BAD in rev2 (test_rev2_oldname_and_recent_refused).
18. SELECT and EXAMINE send LIST for the mailbox (test_rev2_select_search_and_flags).
19. OLDNAME: after RENAME a rev2 client gets a LIST with OLDNAME for the mailbox and each
    of its children (test_rev2_oldname_and_recent_refused).
20. HASCHILDREN: DELETE of a mailbox with children (test_list_special_use_options_...).
21. 63-bit sizes and mod-sequences: Python integers, no limit below that.
"""

from __future__ import annotations

from imap_helpers import Raw
from smtp_helpers import DOCTOR, PASSWORD

LOGIN = f'LOGIN {DOCTOR} "{PASSWORD}"'


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


def test_rev2_oldname_and_recent_refused(imap):
    """RENAME tells a rev2 client the new names with OLDNAME (children included); a name
    not in NFC is kept normalised and told back; STATUS RECENT and the RECENT/NEW/OLD search
    keys are BAD in rev2, still answered in rev1."""
    c = session(imap, rev2=True)
    c.cmd("CREATE Dossiers/2026")
    lines = c.cmd("RENAME Dossiers Archives")
    assert lines[:-1] == [
        b'* LIST (\\HasChildren) "/" "Archives" ("OLDNAME" ("Dossiers"))',
        b'* LIST (\\HasNoChildren) "/" "Archives/2026" ("OLDNAME" ("Dossiers/2026"))']
    assert lines[-1].startswith(b"t4 OK")
    assert c.cmd("RENAME INBOX Vieux")[:-1] == []  # INBOX's mail moved: nothing renamed
    decomposed = "Cafe\u0301".encode()  # "Café" with a combining accent
    nfc = "Café".encode()

    def lit(b: bytes) -> bytes:  # non-ASCII names travel as literals
        return b"{%d}\r\n" % len(b) + b

    told = b'* LIST () "/" ' + lit(nfc) + b' ("OLDNAME" (' + lit(decomposed) + b"))"
    assert b"\r\n".join(c.cmd(b'CREATE "' + decomposed + b'"')).startswith(told)
    lines = c.cmd(b'SELECT "' + decomposed + b'"')
    assert told in b"\r\n".join(lines) and lines[-1].startswith(b"t7 OK")
    assert b'* LIST () "/" ' + lit(nfc) in c.cmd(b'SELECT "' + nfc + b'"')
    assert c.cmd(b'CREATE "a\xc2\x85b"')[-1].startswith(b"t9 NO [CANNOT]")  # C1 control
    assert c.cmd("STATUS INBOX (MESSAGES RECENT)")[-1].startswith(b"t10 BAD")
    assert c.cmd('LIST "" "*" RETURN (STATUS (RECENT))')[-1].startswith(b"t11 BAD")
    for key in ("RECENT", "NEW", "OLD", "NOT (OR RECENT ALL)", "KEYWORD \\Recent"):
        assert c.cmd(f"SEARCH {key}")[-1].split()[1] == b"BAD", key
    assert c.cmd("SORT (DATE) UTF-8 NEW")[-1].split()[1] == b"BAD"
    c.close()
    rev1 = session(imap, rev2=False)
    assert rev1.cmd("STATUS INBOX (RECENT)")[0] == b'* STATUS "INBOX" (RECENT 0)'
    lines = rev1.cmd("RENAME Archives Dossiers")
    assert lines[:-1] == [] and lines[-1].startswith(b"t3 OK")  # rev1: no OLDNAME
    rev1.cmd("SELECT INBOX")
    assert rev1.cmd("SEARCH NEW")[-1].startswith(b"t5 OK")
    rev1.close()
