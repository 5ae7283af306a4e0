"""Protocol details a compliance suite checks and everyday clients rarely notice: each test names
the RFC rule, talks to the real server over real TLS with imaplib, and failed before its fix."""

from __future__ import annotations

import imaplib
import re

import pytest
from imap_helpers import RunningServer
from smtp_helpers import DOCTOR, PASSWORD


def login(server: RunningServer) -> imaplib.IMAP4_SSL:
    return server.connect(DOCTOR, PASSWORD)


def raw_message(headers: str, body: str = "Bonjour.\r\n") -> bytes:
    return (headers.replace("\n", "\r\n") + "\r\n" + body).encode()


def test_envelope_shows_groups_and_source_routes(imap):
    """RFC 3501 7.4.2: a group is a start marker (NIL NIL "name" NIL), its members, then an end
    marker (NIL NIL NIL NIL); an obsolete source route goes in the second address field."""
    imap.deliver(DOCTOR, raw_message(
        "From: <@relay.example:dr.x@cabinet.example>\n"
        "To: Soignants: a@h.example, b@h.example;, Famille:;\n"
        "Subject: groups\n"))
    client = login(imap)
    client.select("INBOX")
    _, data = client.fetch("1", "(ENVELOPE)")
    envelope = data[0]
    assert b'((NIL "@relay.example" "dr.x" "cabinet.example"))' in envelope
    assert (
        b'((NIL NIL "Soignants" NIL)(NIL NIL "a" "h.example")(NIL NIL "b" "h.example")'
        b'(NIL NIL NIL NIL)(NIL NIL "Famille" NIL)(NIL NIL NIL NIL))'
    ) in envelope
    client.logout()


def test_examine_leaves_recent_for_the_next_select(imap):
    """RFC 3501 6.3.2: EXAMINE MUST NOT cause messages to lose \\Recent; it still reports them."""
    for i in range(2):
        imap.deliver(DOCTOR, raw_message(f"Subject: r{i}\n"))
    client = login(imap)
    typ, _ = client.select("INBOX", readonly=True)
    assert typ == "OK" and client.untagged_responses["RECENT"] == [b"2"]
    _, data = client.fetch("1:2", "(FLAGS)")
    assert all(b"\\Recent" in d for d in data)
    client.close()
    assert client.status("INBOX", "(RECENT)")[1] == [b'"INBOX" (RECENT 2)']
    client.select("INBOX")
    assert client.untagged_responses["RECENT"] == [b"2"]
    client.close()
    assert client.status("INBOX", "(RECENT)")[1] == [b'"INBOX" (RECENT 0)']
    client.logout()


def test_lsub_shows_an_unsubscribed_parent_as_noselect(imap):
    """RFC 3501 6.3.9: with "foo/bar" subscribed and "foo" not, LSUB "%" returns "foo" flagged
    \\Noselect. CREATE does not subscribe: only SUBSCRIBE does."""
    client = login(imap)
    assert client.create("Patients/Dupont")[0] == "OK"
    _, data = client.lsub('""', "Patients*")
    assert data == [None]
    assert client.subscribe("Patients/Dupont")[0] == "OK"
    _, data = client.lsub('""', "%")
    patients = [d for d in data if d.endswith(b'"Patients"')]
    assert len(patients) == 1 and b"\\Noselect" in patients[0]
    _, data = client.lsub('""', "Patients*")
    assert [d.rsplit(b" ", 1)[1] for d in data] == [b'"Patients/Dupont"']
    assert b"\\Noselect" not in data[0]
    assert client.subscribe("Patients")[0] == "OK"
    _, data = client.lsub('""', "%")
    patients = [d for d in data if d.endswith(b'"Patients"')]
    assert len(patients) == 1 and b"\\Noselect" not in patients[0]
    client.logout()


def test_search_from_matches_the_envelope_address(imap):
    """RFC 3501 6.4.4: SEARCH FROM looks in the envelope structure's FROM field, where
    "<dr.x (cabinet) @ (Lyon) cabinet.example>" is dr.x@cabinet.example."""
    imap.deliver(DOCTOR, raw_message("From: <dr.x (cabinet) @ (Lyon) cabinet.example>\n"))
    imap.deliver(DOCTOR, raw_message("From: dr.y@cabinet.example (Docteur Y)\n"))
    client = login(imap)
    client.select("INBOX")
    assert client.search(None, "FROM", "dr.x@cabinet.example")[1] == [b"1"]
    assert client.search(None, "FROM", '"Docteur Y"')[1] == [b"2"]
    assert client.search(None, "FROM", "cabinet.example")[1] == [b"1 2"]
    assert client.search(None, "FROM", "nobody@x")[1] == [b""]
    client.logout()


def test_esearch_return_options(imap):
    """RFC 4731 ESEARCH: SEARCH RETURN (MIN MAX ALL COUNT); an empty list means ALL; MIN, MAX
    and ALL are left out when nothing matches, COUNT is not; the tag is echoed."""
    for i in range(5):
        imap.deliver(DOCTOR, raw_message(f"Subject: m{i}\n"))
    client = login(imap)
    assert "ESEARCH" in client.capabilities
    client.select("INBOX")
    client.store("2,4,5", "+FLAGS", "\\Seen")
    tag = client._command("SEARCH", "RETURN", "(MIN MAX ALL COUNT)", "SEEN")
    client._command_complete("SEARCH", tag)
    assert client.response("ESEARCH")[1] == [
        b'(TAG "' + tag + b'") MIN 2 MAX 5 ALL 2,4:5 COUNT 3']
    tag = client._command("UID", "SEARCH", "RETURN", "()", "1:3")
    client._command_complete("UID", tag)
    assert client.response("ESEARCH")[1] == [b'(TAG "' + tag + b'") UID ALL 1:3']
    tag = client._command("SEARCH", "RETURN", "(MIN COUNT)", "KEYWORD", "nothing")
    client._command_complete("SEARCH", tag)
    assert client.response("ESEARCH")[1] == [b'(TAG "' + tag + b'") COUNT 0']
    with pytest.raises(imaplib.IMAP4.error, match="unsupported SEARCH RETURN option"):
        client._simple_command("SEARCH", "RETURN", "(RELEVANCY)", "ALL")
    client.logout()


def test_fetch_modseq_enables_condstore_and_reports_highestmodseq(imap):
    """RFC 7162 3.1: FETCH MODSEQ is a CONDSTORE-enabling command; issued with a mailbox
    selected, it brings an untagged OK [HIGHESTMODSEQ], and later FETCH replies carry MODSEQ."""
    imap.deliver(DOCTOR, raw_message("Subject: m\n"))
    client = login(imap)
    client.select("INBOX")
    client.response("HIGHESTMODSEQ")  # SELECT's, not the one under test
    _, data = client.fetch("1", "(MODSEQ)")
    assert re.fullmatch(rb"1 \(MODSEQ \(\d+\)\)", data[0])
    assert re.fullmatch(rb"\d+", client.response("HIGHESTMODSEQ")[1][0])
    _, data = client.store("1", "+FLAGS", "\\Flagged")
    assert b"MODSEQ (" in data[0] and b"UID 1" in data[0]
    _, data = client.fetch("1", "(BODY[])")  # sets \Seen: the change comes with UID, MODSEQ
    assert b"\\Seen" in data[1] and b"UID 1" in data[1] and b"MODSEQ (" in data[1]
    client.logout()


def test_internaldate_keeps_the_appended_zone_for_fetch_and_search(imap):
    """An APPENDed INTERNALDATE keeps the zone the client gave: FETCH shows the same date-time
    back, and SEARCH ON/BEFORE/SINCE compare its date there, "disregarding time and timezone"
    (RFC 3501 6.4.4): 25-Mar-2007 00:30 +0200 is on the 25th, though it is the 24th in UTC."""
    client = login(imap)
    message = raw_message("Subject: tz\n")
    assert client.append("INBOX", None, '"25-Mar-2007 00:30:00 +0200"', message)[0] == "OK"
    assert client.append("INBOX", None, '"24-Mar-2007 23:30:00 -0100"', message)[0] == "OK"
    client.select("INBOX")
    _, data = client.fetch("1:2", "(INTERNALDATE)")
    assert data == [b'1 (INTERNALDATE "25-Mar-2007 00:30:00 +0200")',
                    b'2 (INTERNALDATE "24-Mar-2007 23:30:00 -0100")']
    assert client.search(None, "ON", "25-Mar-2007")[1] == [b"1"]
    assert client.search(None, "ON", "24-Mar-2007")[1] == [b"2"]
    assert client.search(None, "BEFORE", "25-Mar-2007")[1] == [b"2"]
    assert client.search(None, "SINCE", "25-Mar-2007")[1] == [b"1"]
    client.logout()


BINARY_MESSAGE = (
    b"From: a@b.example\r\nSubject: binary\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"  Ym9u\r\n am91cgBt\r\n\tb25k ZQ\r\n"
    b"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"caf=C3=A9 =\r\nnoir\r\n"
    b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: x-uuencode\r\n"
    b"\r\nbegin 644 x\r\n--b--\r\n"
)


def test_binary_fetch_undoes_transfer_encodings(imap):
    """RFC 3516 BINARY: BINARY[part] is the decoded content (a literal8 when it holds NUL),
    BINARY.SIZE its decoded size, BINARY.PEEK leaves \\Seen alone, an unknown encoding is
    NO [UNKNOWN-CTE]; APPEND takes a literal8 and keeps its octets."""
    from test_imap_server import Raw

    imap.deliver(DOCTOR, BINARY_MESSAGE)
    raw = Raw(imap)
    assert b"BINARY" in raw.cmd(f'LOGIN {DOCTOR} "{PASSWORD}"')[-1]
    raw.cmd("SELECT INBOX")
    lines = raw.cmd("FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1])")
    assert lines[0] == b"* 1 FETCH (BINARY.SIZE[1] 13 BINARY[1] ~{13}\r\nbonjour\x00monde)"
    lines = raw.cmd("FETCH 1 (BINARY.PEEK[2]<0.5>)")
    assert lines[0] == b"* 1 FETCH (BINARY[2]<0> {5}\r\ncaf\xc3\xa9)"
    assert b"\\Seen" not in b"".join(raw.cmd("FETCH 1 (FLAGS)"))
    lines = raw.cmd("FETCH 1 (BINARY[2])")
    assert lines[0].startswith(b"* 1 FETCH (BINARY[2] {10}\r\ncaf\xc3\xa9 noir")
    assert b"\\Seen" in lines[0]
    assert re.match(rb"t\d+ NO \[UNKNOWN-CTE\]", raw.cmd("FETCH 1 (BINARY.PEEK[3])")[-1])
    body = b"Subject: raw\r\n\r\nline\nwith a bare LF and a NUL \x00\r\n"
    raw.send(b"a1 APPEND INBOX ~{%d+}\r\n" % len(body) + body + b"\r\n")
    assert raw.until(b"a1")[-1].startswith(b"a1 OK")
    raw.cmd("NOOP")
    lines = raw.cmd("FETCH 2 (BINARY.PEEK[])")
    assert lines[0] == b"* 2 FETCH (BINARY[] ~{%d}\r\n" % len(body) + body + b")"
    # Not asked for BINARY: no literal8 and no NUL in a literal (RFC 3501 CHAR8), so the NUL
    # reads as 0x80, octet for octet, and the sizes still hold.
    shown = body.replace(b"\x00", b"\x80")
    text = shown.split(b"\r\n\r\n", 1)[1]
    lines = raw.cmd("FETCH 2 (RFC822.SIZE BODY.PEEK[])")
    assert lines[0] == (b"* 2 FETCH (RFC822.SIZE %d BODY[] {%d}\r\n" % (len(body), len(body))
                        + shown + b")")
    lines = raw.cmd("FETCH 2 (BODY.PEEK[TEXT]<25.8>)")
    assert lines[0] == b"* 2 FETCH (BODY[TEXT]<25> {8}\r\n" + text[25:33] + b")"
    assert b"\x80" in text[25:33]
    lines = raw.cmd("FETCH 2 (RFC822.TEXT)")
    assert lines[0].startswith(b"* 2 FETCH (RFC822.TEXT {%d}\r\n" % len(text) + text + b" FLAGS")
    raw.close()


def test_subscriptions_outlive_delete_and_list_extended(imap):
    """RFC 3501 6.3.6: DELETE must not drop a subscription (LSUB shows it \\Noselect).
    RFC 5258 LIST-EXTENDED: selection (SUBSCRIBED, RECURSIVEMATCH), \\NonExistent, CHILDINFO,
    several patterns, RETURN (CHILDREN SUBSCRIBED), BAD for unknown options; RFC 5819
    LIST-STATUS: RETURN (STATUS (...)) adds a STATUS reply per listed folder."""
    from test_imap_server import Raw

    raw = Raw(imap)
    caps = raw.cmd(f'LOGIN {DOCTOR} "{PASSWORD}"')[-1]
    assert b"LIST-EXTENDED" in caps and b"LIST-STATUS" in caps
    for name in ("Cabinet/Archives", "Cabinet/Patients", "Labo", "Vieux"):
        raw.cmd(f'CREATE "{name}"')
    for name in ("Cabinet/Patients", "Labo", "Vieux"):
        raw.cmd(f'SUBSCRIBE "{name}"')
    assert raw.cmd('DELETE "Vieux"')[-1].split()[1] == b"OK"
    assert raw.cmd('LSUB "" "Vieux"')[0] == b'* LSUB (\\Noselect) "/" "Vieux"'

    lines = raw.cmd('LIST (SUBSCRIBED) "" "*"')
    assert b'* LIST (\\NonExistent \\Subscribed) "/" "Vieux"' in lines
    assert b'* LIST (\\HasNoChildren \\Subscribed) "/" "Labo"' in lines
    assert not any(b'"Cabinet/Archives"' in line for line in lines)

    lines = raw.cmd('LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"')
    assert b'* LIST (\\HasChildren) "/" "Cabinet" (CHILDINFO ("SUBSCRIBED"))' in lines
    lines = raw.cmd('LIST (SUBSCRIBED RECURSIVEMATCH) "" ("Cabinet" "Cabinet/*")')
    assert not any(b"CHILDINFO" in line for line in lines)  # the child is listed itself

    lines = raw.cmd('LIST "" ("Labo" "Cabinet/%") RETURN (CHILDREN SUBSCRIBED)')
    assert lines[:-1] == [
        b'* LIST (\\HasNoChildren) "/" "Cabinet/Archives"',
        b'* LIST (\\HasNoChildren \\Subscribed) "/" "Cabinet/Patients"',
        b'* LIST (\\HasNoChildren \\Subscribed) "/" "Labo"',
    ]
    imap.deliver(DOCTOR, raw_message("Subject: s\n"))
    lines = raw.cmd('LIST "" "INBOX" RETURN (STATUS (MESSAGES UNSEEN))')
    assert lines[:-1] == [b'* LIST (\\HasNoChildren) "/" "INBOX"',
                          b'* STATUS "INBOX" (MESSAGES 1 UNSEEN 1)']
    for bad in ('LIST (BOGUS) "" "*"', 'LIST (RECURSIVEMATCH) "" "*"',
                'LIST (RECURSIVEMATCH REMOTE) "" "*"', 'LIST "" "*" RETURN (BOGUS)'):
        assert raw.cmd(bad)[-1].split()[1] == b"BAD", bad
    assert raw.cmd('UNSUBSCRIBE "Vieux"')[-1].split()[1] == b"OK"
    assert raw.cmd('LSUB "" "Vieux"')[:-1] == []
    raw.close()


def test_qresync_resynchronises_with_vanished(imap):
    """RFC 7162 QRESYNC: after ENABLE QRESYNC, expunges are VANISHED lines; SELECT (QRESYNC
    (uidvalidity modseq known-uids)) and UID FETCH (CHANGEDSINCE n VANISHED) report what
    vanished (VANISHED (EARLIER)) and what changed since the client's MODSEQ."""
    from test_imap_server import Raw

    for i in range(5):
        imap.deliver(DOCTOR, raw_message(f"Subject: q{i}\n"))
    raw = Raw(imap)
    assert b"QRESYNC" in raw.cmd(f'LOGIN {DOCTOR} "{PASSWORD}"')[-1]
    before = raw.cmd("SELECT INBOX (QRESYNC (1 1))")
    assert before[-1].split()[1] == b"BAD"  # not enabled yet
    assert raw.cmd("ENABLE QRESYNC")[0] == b"* ENABLED QRESYNC"
    lines = raw.cmd("SELECT INBOX")
    validity = re.search(rb"UIDVALIDITY (\d+)", b"\n".join(lines)).group(1)
    modseq = re.search(rb"HIGHESTMODSEQ (\d+)", b"\n".join(lines)).group(1)
    raw.cmd("STORE 2 +FLAGS.SILENT (\\Seen)")
    raw.cmd("STORE 4 +FLAGS.SILENT (\\Deleted)")
    assert raw.cmd("EXPUNGE")[:-1] == [b"* VANISHED 4"]

    other = login(imap)  # another session expunges: this one hears VANISHED
    other.select("INBOX")
    other.uid("STORE", "5", "+FLAGS", "\\Deleted")
    other.expunge()
    other.logout()
    assert b"* VANISHED 5" in raw.cmd("NOOP")

    lines = raw.cmd(b"SELECT INBOX (QRESYNC (%s %s 1:5))" % (validity, modseq))
    assert b"* OK [CLOSED] previous mailbox closed" in lines
    assert b"* VANISHED (EARLIER) 4:5" in lines
    changed = [line for line in lines if b"FETCH" in line]
    assert len(changed) == 1 and re.fullmatch(
        rb"\* 2 FETCH \(UID 2 FLAGS \(\\Seen\) MODSEQ \(\d+\)\)", changed[0])
    lines = raw.cmd(b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE %s VANISHED)" % modseq)
    assert lines[0] == b"* VANISHED (EARLIER) 4:5"
    assert [line for line in lines if b"FETCH (" in line][0].startswith(b"* 2 FETCH (UID 2 ")
    assert raw.cmd(b"FETCH 1:* (FLAGS) (CHANGEDSINCE %s VANISHED)" % modseq)[-1].split()[1] \
        == b"BAD"
    raw.close()
