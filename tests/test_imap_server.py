"""The IMAP server with real clients (imaplib, aioimaplib, raw TLS sockets) over real TLS."""

from __future__ import annotations

import asyncio
import imaplib
import re
import ssl

import pytest
from imap_helpers import Raw, RunningServer, message
from smtp_helpers import DOCTOR as DOC
from smtp_helpers import PASSWORD, PATIENT, ROBOT
from smtp_helpers import PHARMACIST as PHARMA

LOGIN_DOC = f'LOGIN {DOC} "{PASSWORD}"'


def status(client: imaplib.IMAP4, *args: str) -> str:
    """The status of a command sent with imaplib, BAD included (imaplib raises on BAD)."""
    try:
        return client._simple_command(*args)[0]
    except imaplib.IMAP4.error as exc:
        assert "BAD" in str(exc), exc
        return "BAD"


def login(server: RunningServer, user: str = DOC) -> imaplib.IMAP4_SSL:
    return server.connect(user, PASSWORD)


MULTIPART = (
    b"From: =?utf-8?q?Dr_M=C3=A9decin?= <doc@test.localhost>\r\n"
    b"To: patient@patient.test.localhost\r\n"
    b"Subject: Ordonnance\r\n"
    b"Date: Tue, 3 Feb 2026 10:00:00 +0100\r\n"
    b"Message-ID: <rx1@test.localhost>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="XYZ"\r\n'
    b"\r\n"
    b"preamble\r\n"
    b"--XYZ\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"Voici votre ordonnance, caf=C3=A9.\r\n"
    b"--XYZ\r\n"
    b'Content-Type: application/pdf; name="ordonnance.pdf"\r\n'
    b'Content-Disposition: attachment; filename="ordonnance.pdf"\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"JVBERi0xLjQK\r\n"
    b"--XYZ\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"Subject: inner\r\n"
    b"From: x@y.example\r\n"
    b"\r\n"
    b"inner body\r\n"
    b"--XYZ--\r\n"
    b"epilogue\r\n"
)


def test_starttls_port_hides_login_until_tls(imap):
    raw = Raw(imap, implicit=False)
    assert b"STARTTLS" in raw.greeting and b"LOGINDISABLED" in raw.greeting
    assert b"AUTH=" not in raw.greeting
    reply = raw.cmd(LOGIN_DOC)
    assert reply[-1].startswith(b"t1 NO [PRIVACYREQUIRED]")
    assert raw.cmd("AUTHENTICATE PLAIN")[-1].startswith(b"t2 NO [PRIVACYREQUIRED]")
    raw.starttls()
    caps = raw.cmd("CAPABILITY")
    assert b"AUTH=PLAIN" in caps[0] and b"LOGINDISABLED" not in caps[0]
    assert b"STARTTLS" not in caps[0]
    assert raw.cmd(LOGIN_DOC)[-1].startswith(b"t5 OK")
    raw.close()


def test_starttls_with_imaplib(imap):
    client = imaplib.IMAP4("127.0.0.1", imap.starttls_port, timeout=10)
    assert "LOGINDISABLED" in client.capabilities
    client.starttls(ssl_context=imap.client_context())
    client.login(DOC, PASSWORD)
    assert client.select("INBOX")[0] == "OK"
    client.logout()


def test_commands_pipelined_after_starttls_are_dropped(imap):
    raw = Raw(imap, implicit=False)
    raw.send(b"t1 STARTTLS\r\nt2 CAPABILITY\r\n")
    assert raw.until(b"t1")[-1].startswith(b"t1 OK")
    raw.sock = imap.client_context().wrap_socket(raw.sock, server_hostname="127.0.0.1")
    raw.n = 2
    reply = raw.cmd("NOOP")
    assert reply == [b"t3 OK NOOP completed"]  # nothing answered for the injected t2
    raw.close()


def test_login_failures_and_disconnect_after_three(imap):
    raw = Raw(imap)
    for i in (1, 2):
        assert raw.cmd(f'LOGIN {DOC} "wrong{i}"')[-1].startswith(
            f"t{i} NO [AUTHENTICATIONFAILED]".encode()
        )
    reply = raw.cmd(f'LOGIN {DOC} "wrong3"')
    assert reply[0] == b"* BYE too many failed logins" and reply[1].startswith(b"t3 NO")
    with pytest.raises((EOFError, ConnectionError, ssl.SSLError)):
        raw.line()


def test_authenticate_plain_both_ways(imap):
    client = imap.connect()
    typ, _ = client.authenticate("PLAIN", lambda _: f"\0{DOC}\0{PASSWORD}".encode())
    assert typ == "OK"
    client.logout()
    raw = Raw(imap)
    import base64

    token = base64.b64encode(f"\0{DOC}\0{PASSWORD}".encode()).decode()
    assert raw.cmd(f"AUTHENTICATE PLAIN {token}")[-1].startswith(b"t1 OK [CAPABILITY")
    raw.close()
    raw = Raw(imap)
    bad = base64.b64encode(f"{PHARMA}\0{DOC}\0{PASSWORD}".encode()).decode()
    assert raw.cmd(f"AUTHENTICATE PLAIN {bad}")[-1].startswith(b"t1 NO [AUTHORIZATIONFAILED]")
    assert raw.cmd("AUTHENTICATE PLAIN !!!")[-1].startswith(b"t2 BAD")
    assert raw.cmd("AUTHENTICATE CRAM-MD5")[-1].startswith(b"t3 NO")
    raw.close()


def test_fetch_every_item_on_a_multipart_message(imap):
    imap.deliver(DOC, MULTIPART)
    client = login(imap)
    assert client.select("INBOX") == ("OK", [b"1"])
    typ, data = client.fetch("1", "(UID RFC822.SIZE FLAGS INTERNALDATE ENVELOPE BODYSTRUCTURE)")
    assert typ == "OK"
    line = data[0]
    assert b"RFC822.SIZE %d" % len(MULTIPART) in line
    assert b'"=?utf-8?q?Dr_M=C3=A9decin?=" NIL "doc" "test.localhost"' in line
    assert b'"Ordonnance"' in line and b'"<rx1@test.localhost>"' in line
    assert b'("text" "plain" ("charset" "utf-8") NIL NIL "QUOTED-PRINTABLE" 34 1' in line
    assert b'("attachment" ("filename" "ordonnance.pdf"))' in line
    assert b'"message" "rfc822" NIL NIL NIL "7BIT"' in line
    assert b'"mixed" ("boundary" "XYZ")' in line
    assert b"\\Recent" in line and b"\\Seen" not in line
    typ, data = client.fetch("1", "(BODY.PEEK[] BODY.PEEK[1] BODY.PEEK[2.MIME] BODY.PEEK[3.1])")
    assert data[0][1] == MULTIPART
    assert data[1][1] == b"Voici votre ordonnance, caf=C3=A9."
    assert data[2][1].startswith(b"Content-Type: application/pdf") and data[2][1].endswith(
        b"\r\n\r\n"
    )
    assert data[3][1] == b"inner body"  # the CRLF before a boundary belongs to the boundary
    typ, data = client.fetch(
        "1", "(BODY.PEEK[3.HEADER] BODY.PEEK[3.TEXT] BODY[HEADER.FIELDS (SUBJECT TO)])"
    )
    assert data[0][1] == b"Subject: inner\r\nFrom: x@y.example\r\n\r\n"
    assert data[1][1] == b"inner body"
    assert data[2][1] == b"To: patient@patient.test.localhost\r\nSubject: Ordonnance\r\n\r\n"
    assert b"FLAGS (\\Seen \\Recent)" in data[-1]  # BODY[...] (not PEEK) set \Seen
    not_fields = "FROM TO SUBJECT DATE MESSAGE-ID MIME-VERSION"
    typ, data = client.fetch(
        "1", f"(BODY[]<10.20> BODY[HEADER.FIELDS.NOT ({not_fields})] RFC822.HEADER BODY)"
    )
    assert data[0][0].endswith(b"BODY[]<10> {20}") and data[0][1] == MULTIPART[10:30]
    assert data[1][1] == b'Content-Type: multipart/mixed; boundary="XYZ"\r\n\r\n'
    assert data[2][1] == MULTIPART[: MULTIPART.index(b"\r\n\r\n") + 4]
    assert b'"7BIT" 10 1) 4) "mixed"))' in data[-1]  # BODY: no extension data
    typ, data = client.fetch("1", "(RFC822.TEXT RFC822)")
    assert data[0][1] == MULTIPART[MULTIPART.index(b"\r\n\r\n") + 4 :]
    assert data[1][1] == MULTIPART
    for macro in ("ALL", "FAST", "FULL"):
        typ, data = client.fetch("1", macro)
        assert typ == "OK" and b"INTERNALDATE" in data[0]
    client.logout()


def test_bare_lf_delivery_is_served_with_crlf(imap):
    imap.deliver(DOC, b"Subject: lf\nFrom: a@b.example\n\nline1\nline2\n")
    client = login(imap)
    client.select("INBOX")
    _, data = client.fetch("1", "(RFC822.SIZE BODY.PEEK[])")
    body = data[0][1]
    assert body == b"Subject: lf\r\nFrom: a@b.example\r\n\r\nline1\r\nline2\r\n"
    assert b"RFC822.SIZE %d" % len(body) in data[0][0]
    client.logout()


def test_store_flags_and_keywords_persist(imap):
    for i in range(3):
        imap.deliver(DOC, message(f"m{i}"))
    client = login(imap)
    client.select("INBOX")
    typ, data = client.store("1:2", "+FLAGS", r"(\Flagged $Prescription)")
    assert typ == "OK" and len(data) == 2 and b"$Prescription" in data[0]
    assert client.store("2", "-FLAGS.SILENT", r"(\Flagged)") == ("OK", [None])
    client.store("3", "FLAGS", r"(\Seen \Answered)")
    assert status(client, "STORE", "1", "+FLAGS", r"(\Bogus)") == "BAD"
    assert status(client, "STORE", "1", "+FLAGS", r"(\Recent)") == "BAD"
    client.logout()
    client = login(imap)
    typ, data = client.select("INBOX")
    assert b"$Prescription" in client.untagged_responses["FLAGS"][0]
    _, data = client.fetch("1:3", "FLAGS")
    assert b"\\Flagged $Prescription" in data[0]
    assert b"FLAGS ($Prescription" in data[1] or b"FLAGS ($Prescription)" in data[1]
    assert b"\\Answered \\Seen" in data[2]
    assert client.select("INBOX", readonly=True)[0] == "OK"
    typ, data = client.store("1", "+FLAGS", r"(\Seen)")
    assert typ == "NO" and b"read-only" in data[0]
    client.logout()


def test_search_keys(imap):
    imap.deliver(DOC, message("Renouvellement", "Amoxicilline 1g\r\n", sender="x@hop.example"))
    imap.deliver(DOC, MULTIPART)
    imap.deliver(
        DOC, message("=?utf-8?q?R=C3=A9sultats?=", "rien\r\n", extra="Cc: bio@lab.example\r\n")
    )
    client = login(imap)
    client.select("INBOX")
    client.store("1", "+FLAGS", r"(\Flagged)")

    def search(*keys, charset=None):
        typ, data = client.search(charset, *keys)
        assert typ == "OK", data
        return data[0].split()

    assert search("ALL") == [b"1", b"2", b"3"]
    assert search("FLAGGED") == [b"1"]
    assert search("UNFLAGGED", "SUBJECT", "ordonnance") == [b"2"]
    assert search("FROM", "hop.example") == [b"1"]
    assert search("BODY", "amoxicilline") == [b"1"]
    client.literal = "café".encode()
    assert search("BODY", charset="UTF-8") == [b"2"]  # quoted-printable, decoded
    client.literal = "RÉSULTATS".encode()
    assert search("SUBJECT", charset="UTF-8") == [b"3"]  # RFC 2047 word, decoded
    assert search("CC", "bio@lab") == [b"3"]
    assert search("TEXT", "inner") == [b"2"]
    assert search("HEADER", "Message-ID", "rx1") == [b"2"]
    assert search("OR", "FLAGGED", "CC", "bio") == [b"1", b"3"]
    assert search("NOT", "FLAGGED") == [b"2", b"3"]
    assert search("LARGER", "500") == [b"2"]
    assert search("SMALLER", "500") == [b"1", b"3"]
    assert search("2:*") == [b"2", b"3"]
    assert search("UID", "1,3") == [b"1", b"3"]
    assert search("SENTBEFORE", "1-Jan-2000") == [b"1", b"3"]
    assert search("SENTSINCE", "1-Feb-2026") == [b"2"]
    assert search("SINCE", "1-Jan-2020") == [b"1", b"2", b"3"]
    assert search("BEFORE", "1-Jan-2020") == []
    assert search("NEW") == [b"1", b"2", b"3"] and search("RECENT") == [b"1", b"2", b"3"]
    assert search("OLD") == [] and search("SEEN") == []
    assert search("KEYWORD", "$x") == [] and search("UNKEYWORD", "$x") == [b"1", b"2", b"3"]
    assert search("(FLAGGED SUBJECT renouvellement)") == [b"1"]
    assert client.uid("SEARCH", "SUBJECT", "ordonnance") == ("OK", [b"2"])
    typ, data = client._simple_command("SEARCH", "CHARSET", "KOI8-R", "ALL")
    assert typ == "NO" and b"BADCHARSET" in data[0]
    assert status(client, "SEARCH", "BOGUS") == "BAD"
    assert status(client, "SEARCH", "ON", "yesterday") == "BAD"
    client.logout()


def test_copy_move_expunge_with_uidplus(imap):
    for i in range(4):
        imap.deliver(DOC, message(f"m{i}"))
    client = login(imap)
    client.select("INBOX")
    typ, data = client.copy("1:2", "Trash")
    assert typ == "OK" and re.match(rb"\[COPYUID \d+ 1:2 1:2\]", data[0])
    typ, data = client.uid("MOVE", "3", "Drafts")
    assert typ == "OK"
    assert client.untagged_responses.get("EXPUNGE") == [b"3"]
    typ, data = client._simple_command("COPY", "1", "Nowhere")
    assert typ == "NO" and b"[TRYCREATE]" in data[0]
    client.store("1,2", "+FLAGS", r"(\Deleted)")
    client.untagged_responses.clear()
    typ, data = client.uid("EXPUNGE", "2")
    assert typ == "OK" and client.untagged_responses.pop("EXPUNGE") == [b"2"]
    typ, data = client.expunge()
    assert data == [b"1"]
    _, data = client.uid("SEARCH", "ALL")
    assert data == [b"4"]
    client.select("Trash")
    _, data = client.fetch("1:*", "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert [d[1] for d in data if isinstance(d, tuple)] == [
        b"Subject: m0\r\n\r\n",
        b"Subject: m1\r\n\r\n",
    ]
    client.logout()


def test_uids_are_never_reused_and_uidvalidity_is_stable(imap):
    imap.deliver(DOC, message("a"))
    imap.deliver(DOC, message("b"))
    client = login(imap)
    client.select("INBOX")
    validity = client.untagged_responses["UIDVALIDITY"][0]
    client.store("2", "+FLAGS", r"(\Deleted)")
    client.expunge()
    client.logout()
    imap.deliver(DOC, message("c"))
    client = login(imap)
    client.select("INBOX")
    assert client.untagged_responses["UIDVALIDITY"][0] == validity
    assert client.uid("SEARCH", "ALL") == ("OK", [b"1 3"])
    assert client.untagged_responses["UIDNEXT"] == [b"4"]
    client.logout()


def test_folders_list_status_subscribe(imap):
    client = login(imap)
    typ, data = client.list()
    assert sorted(data) == sorted(
        [
            b'(\\HasNoChildren) "/" "INBOX"',
            b'(\\HasNoChildren \\Sent) "/" "Sent"',
            b'(\\HasNoChildren \\Drafts) "/" "Drafts"',
            b'(\\HasNoChildren \\Trash) "/" "Trash"',
        ]
    )
    assert client.create("Patients/Dupont")[0] == "OK"
    assert client.create('"Pharmacie du Port"')[0] == "OK"
    assert client._simple_command("CREATE", '"R&AOk-gl&AOk-"')[0] == "OK"
    typ, data = client.list('""', "%")
    names = [d.rsplit(b'"/" ', 1)[1] for d in data]
    assert b'"Patients"' in names and b'"Patients/Dupont"' not in names
    assert b'"R&AOk-gl&AOk-"' in names and b'"Pharmacie du Port"' in names
    assert b'(\\HasChildren) "/" "Patients"' in data
    typ, data = client.list('"Patients/"', "*")
    assert data == [b'(\\HasNoChildren) "/" "Patients/Dupont"']
    assert client.list('""', "inbox")[1] == [b'(\\HasNoChildren) "/" "INBOX"']
    assert client.list('""', '""')[1] == [b'(\\Noselect) "/" ""']
    assert client._simple_command("CREATE", "Patients")[0] == "NO"
    assert client.response("NO")  # ALREADYEXISTS
    assert client.rename("Patients", "Dossiers")[0] == "OK"
    assert client.list('""', "Dossiers/*")[1] == [b'(\\HasNoChildren) "/" "Dossiers/Dupont"']
    assert client.delete("Dossiers")[0] == "NO"  # has a sub-folder
    assert client.delete("Dossiers/Dupont")[0] == "OK"
    assert client.delete("INBOX")[0] == "NO"
    assert client.delete("Nowhere")[0] == "NO"
    assert client.select("Nowhere")[0] == "NO"
    assert client.unsubscribe("Trash")[0] == "OK"
    _, data = client.lsub('""', "*")
    assert all(b"Trash" not in d for d in data) and any(b"Sent" in d for d in data)
    assert client.subscribe("Trash")[0] == "OK"
    imap.deliver(DOC, message("x"))
    typ, data = client.status("INBOX", "(MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ)")
    assert re.match(
        rb'"INBOX" \(MESSAGES 1 RECENT 1 UIDNEXT 2 UIDVALIDITY \d+ UNSEEN 1 HIGHESTMODSEQ \d+\)',
        data[0],
    )
    assert status(client, "STATUS", "INBOX", "(BOGUS)") == "BAD"
    assert client._simple_command("RENAME", "INBOX", "Old")[0] == "OK"
    assert client.status("Old", "(MESSAGES)")[1] == [b'"Old" (MESSAGES 1)']
    assert client.status("INBOX", "(MESSAGES)")[1] == [b'"INBOX" (MESSAGES 0)']
    client.logout()


def test_append_sent_copy_with_flags_and_date(imap):
    client = login(imap)
    sent = message("Votre ordonnance", sender=DOC, to="patient@patient.test.localhost")
    typ, data = client.append("Sent", r"(\Seen)", '"07-Feb-1994 21:52:25 -0800"', sent)
    assert typ == "OK" and re.match(rb"\[APPENDUID \d+ 1\]", data[0])
    client.select("Sent")
    _, data = client.fetch("1", "(FLAGS INTERNALDATE BODY.PEEK[])")
    assert b"\\Seen" in data[0][0] and b'INTERNALDATE "07-Feb-1994 21:52:25 -0800"' in data[0][0]
    assert data[0][1] == sent
    typ, data = client.append("Nowhere", None, None, sent)
    assert typ == "NO" and b"TRYCREATE" in data[0]
    client.logout()


def test_literal_plus_append_and_oversize_literal(imap):
    raw = Raw(imap)
    raw.cmd(LOGIN_DOC)
    body = message("lp")
    raw.send(b"a1 APPEND Drafts (\\Draft) {%d+}\r\n" % len(body) + body + b"\r\n")
    assert raw.until(b"a1")[-1].startswith(b"a1 OK [APPENDUID")
    raw.send(b"a2 APPEND Drafts {999999999999}\r\n")
    assert raw.until(b"a2")[-1].startswith(b"a2 NO [TOOBIG]")
    assert raw.cmd("NOOP")[-1].startswith(b"t2 OK")  # the connection goes on
    raw.send(b"a3 APPEND Drafts {999999999999+}\r\n")
    reply = raw.until(b"* BYE")
    assert reply[-2].startswith(b"a3 NO [TOOBIG]")
    raw.close()
    client = login(imap)  # and the server too
    client.logout()


def test_error_paths_keep_the_connection(imap):
    raw = Raw(imap)
    assert raw.cmd("FROBNICATE")[-1] == b"t1 BAD unknown command FROBNICATE"
    assert raw.cmd("SELECT INBOX")[-1].startswith(b"t2 BAD SELECT is not allowed before login")
    assert raw.cmd(LOGIN_DOC)[-1].startswith(b"t3 OK")
    assert raw.cmd("FETCH 1 FLAGS")[-1].startswith(b"t4 BAD FETCH needs a selected mailbox")
    assert raw.cmd("LOGIN again x")[-1].startswith(b"t5 BAD")
    assert raw.cmd("SELECT INBOX")[-1].startswith(b"t6 OK [READ-WRITE]")
    assert raw.cmd("FETCH 1 FLAGS")[-1].startswith(b"t7 BAD invalid sequence set")
    assert raw.cmd("FETCH 1:* (FLAGS BOGUS)")[-1].startswith(b"t8 BAD")
    assert raw.cmd("FETCH x FLAGS")[-1].startswith(b"t9 BAD")
    assert raw.cmd("FETCH 1 BODY[9.HEADERX]")[-1].startswith(b"t10 BAD")
    assert raw.cmd("UID FETCH 1:* FLAGS")[-1].startswith(b"t11 OK")  # empty set is fine by UID
    assert raw.cmd("STORE 1 +FLAGZ (x)")[-1].startswith(b"t12 BAD")
    assert raw.cmd('SEARCH (FLAGGED')[-1].startswith(b"t13 BAD")
    assert raw.cmd("UID FROB 1")[-1].startswith(b"t14 BAD")
    assert raw.cmd("NOOP extra")[-1].startswith(b"t15 BAD")
    raw.send(b"\r\n")
    assert raw.line().startswith(b"* BAD")
    assert raw.cmd("CHECK")[-1].startswith(b"t16 OK")
    assert raw.cmd("UNSELECT")[-1].startswith(b"t17 OK")
    assert raw.cmd("ID NIL")[0].startswith(b'* ID ("name" "mssgw"')
    assert raw.cmd("NAMESPACE")[0] == b'* NAMESPACE (("" "/")) NIL NIL'
    assert raw.cmd("ENABLE CONDSTORE")[0] == b"* ENABLED CONDSTORE"
    reply = raw.cmd("LOGOUT")
    assert reply[0].startswith(b"* BYE") and reply[1].startswith(b"t21 OK")


def test_another_users_mail_is_out_of_reach(imap):
    imap.deliver(PHARMA, message("secret ordonnance"))
    client = login(imap, DOC)
    for name in ("../pharma", "../../test.localhost/pharma", "/pharma", "~pharma", "#pharma/INBOX"):
        typ, _ = client._simple_command("SELECT", f'"{name}"')
        assert typ == "NO", name
    assert client._simple_command("CREATE", '"../pharma"')[0] == "NO"
    assert client.select("INBOX") == ("OK", [b"0"])
    assert all(b"pharma" not in d for d in client.list()[1])
    client.logout()
    other = login(imap, PHARMA)
    assert other.select("INBOX") == ("OK", [b"1"])
    other.logout()


def test_two_sessions_see_each_others_changes(imap):
    imap.deliver(DOC, message("one"))
    a, b = login(imap), login(imap)
    a.select("INBOX")
    b.select("INBOX")
    a.store("1", "+FLAGS", r"(\Flagged)")
    b.untagged_responses.clear()
    b.noop()
    assert b.untagged_responses.pop("FETCH") == [b"1 (UID 1 FLAGS (\\Flagged))"]
    b.append("INBOX", None, None, message("two"))
    a.untagged_responses.clear()
    a.noop()
    assert a.untagged_responses.pop("EXISTS") == [b"2"]
    imap.deliver(DOC, message("three"))
    b.store("1", "+FLAGS", r"(\Deleted)")
    b.expunge()
    typ, _ = a.fetch("1", "FLAGS")  # EXPUNGE is held back during FETCH...
    assert "EXPUNGE" not in a.untagged_responses
    a.untagged_responses.clear()
    a.noop()  # ...and reported by the next command that may shift numbers
    assert a.untagged_responses.get("EXPUNGE") == [b"1"]
    _, data = a.fetch("1:*", "(UID)")
    assert data == [b"1 (UID 2)", b"2 (UID 3)"]
    a.logout()
    b.logout()


def test_condstore(imap):
    imap.deliver(DOC, message("one"))
    imap.deliver(DOC, message("two"))
    client = login(imap)
    typ, data = client._simple_command("SELECT", "INBOX", "(CONDSTORE)")
    assert typ == "OK"
    client.state = "SELECTED"  # imaplib's select() cannot send parameters
    highest = int(client.untagged_responses["HIGHESTMODSEQ"][0])
    _, data = client.fetch("1:*", "(MODSEQ)")
    assert all(b"MODSEQ (" in d for d in data)
    _, data = client.store("1", "+FLAGS", r"(\Seen)")
    m = re.search(rb"MODSEQ \((\d+)\)", data[0])
    assert m and int(m.group(1)) > highest
    _, data = client.fetch("1:*", f"(FLAGS) (CHANGEDSINCE {highest})")
    assert len(data) == 1 and data[0].startswith(b"1 (FLAGS")
    typ, data = client._simple_command(
        "STORE", "1:2", f"(UNCHANGEDSINCE {highest})", "+FLAGS", r"(\Answered)"
    )
    assert typ == "OK" and b"[MODIFIED 1]" in data[0]
    _, data = client.search(None, "MODSEQ", str(highest + 1))
    assert data[0].startswith(b"1 2 (MODSEQ ")  # \Seen on 1, \Answered on 2
    typ, data = client.status("INBOX", "(HIGHESTMODSEQ)")
    assert typ == "OK"
    client.logout()


def test_patient_mailbox_reads_are_audited(imap):
    from gateway import audit

    imap.deliver(PATIENT, MULTIPART)
    client = imap.connect(PATIENT, PASSWORD)
    client.select("INBOX")
    client.fetch("1", "(FLAGS)")
    assert [a[1] for a in imap.audit] == ["imap.select"]
    client.fetch("1", "(BODY.PEEK[2])")
    client.logout()
    entries = list(audit.read(imap.config, action="imap."))
    assert [(e.actor, e.action, e.target) for e in entries] == [
        (PATIENT, "imap.select", PATIENT),
        (PATIENT, "imap.read", PATIENT),
    ]
    assert entries[1].details == {"folder": "INBOX", "uids": "1"}
    client = login(imap, DOC)  # a professional's reads are not patient data
    client.select("INBOX")
    client.logout()
    assert len(list(audit.read(imap.config, action="imap."))) == 2


def _certificate(imap: RunningServer, kind: str, address: str) -> ssl.SSLContext:
    from gateway.pki.ca import issue

    issued = issue(imap.config, kind, address, address)
    ctx = imap.client_context()
    ctx.load_cert_chain(str(issued.cert_path), str(issued.key_path))
    return ctx


def test_application_mailbox_logs_in_with_its_certificate(imap):
    imap.deliver(ROBOT, message("for the robot"))
    ctx = _certificate(imap, "org-client", ROBOT)
    client = imaplib.IMAP4_SSL("127.0.0.1", imap.tls_port, ssl_context=ctx, timeout=10)
    assert "AUTH=EXTERNAL" in client.capabilities
    typ, _ = client.authenticate("EXTERNAL", lambda _: b"")
    assert typ == "OK"
    assert client.select("INBOX") == ("OK", [b"1"])
    client.logout()
    # naming the mailbox explicitly works too; naming another one does not
    client = imaplib.IMAP4_SSL("127.0.0.1", imap.tls_port, ssl_context=ctx, timeout=10)
    assert client.authenticate("EXTERNAL", lambda _: ROBOT.encode())[0] == "OK"
    client.logout()
    client = imaplib.IMAP4_SSL("127.0.0.1", imap.tls_port, ssl_context=ctx, timeout=10)
    with pytest.raises(imaplib.IMAP4.error, match="does not name"):
        client.authenticate("EXTERNAL", lambda _: DOC.encode())
    client.logout()


def test_certificate_login_is_only_for_application_mailboxes(imap):
    ctx = _certificate(imap, "personal-auth", DOC)
    client = imaplib.IMAP4_SSL("127.0.0.1", imap.tls_port, ssl_context=ctx, timeout=10)
    with pytest.raises(imaplib.IMAP4.error, match="only for application mailboxes"):
        client.authenticate("EXTERNAL", lambda _: b"")
    client.logout()
    client = imap.connect()  # without a certificate EXTERNAL is not even offered
    assert "AUTH=EXTERNAL" not in client.capabilities
    client.logout()


def test_suspended_mailbox_is_refused_at_once(imap):
    from gateway.directory import open_directory

    client = login(imap)  # a verified login: its credentials are now cached
    client.logout()
    open_directory(imap.config, actor="test").suspend(DOC)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        login(imap)


async def test_idle_announces_a_delivery_without_being_asked(imap):
    import aioimaplib

    client = aioimaplib.IMAP4_SSL(
        host="127.0.0.1", port=imap.tls_port, ssl_context=imap.client_context(), timeout=10
    )
    await client.wait_hello_from_server()
    assert (await client.login(DOC, PASSWORD)).result == "OK"
    assert (await client.select("INBOX")).result == "OK"
    idle = await client.idle_start(timeout=10)
    await asyncio.sleep(0.2)  # let the server enter IDLE (a delivery before it counts too)
    await asyncio.get_running_loop().run_in_executor(
        None, imap.deliver, DOC, message("delivered while idling")
    )
    # The client sends nothing: the EXISTS can only come from the server noticing the delivery
    # (wait_for only bounds a test that would otherwise hang).
    push = await asyncio.wait_for(client.wait_server_push(), 30)
    assert any(b"EXISTS" in (p if isinstance(p, bytes) else p.encode()) for p in push), push
    client.idle_done()
    assert (await asyncio.wait_for(idle, 5)).result == "OK"
    assert (await client.logout()).result == "OK"


async def test_an_idle_session_rests_its_store_and_still_hears_of_changes(imap):
    """The worker lets unused stores rest (`rest_stores`, every 10 s, after 30 s unused): done
    here at once. An IDLE session on a resting store polls without opening its index, and
    still announces what another process appends and what is delivered."""
    import os
    import subprocess
    import sys

    import aioimaplib

    index = str(imap.inbox(DOC) / "mssgw-index.sqlite")

    def index_open() -> bool:
        for fd in os.listdir("/proc/self/fd"):
            try:
                if os.readlink(f"/proc/self/fd/{fd}").startswith(index):
                    return True
            except OSError:
                continue
        return False

    async def rest() -> None:
        async def on_server() -> object:
            return imap.hooks.pool.rest_idle(0)

        closing = asyncio.run_coroutine_threadsafe(on_server(), imap.loop).result(10)
        assert closing is not None
        await asyncio.get_running_loop().run_in_executor(None, closing)
        assert not index_open()

    async def pushed(what: bytes) -> None:
        push = await asyncio.wait_for(client.wait_server_push(), 30)  # the server's own word
        assert any(what in (p if isinstance(p, bytes) else p.encode()) for p in push), push

    client = aioimaplib.IMAP4_SSL(
        host="127.0.0.1", port=imap.tls_port, ssl_context=imap.client_context(), timeout=10
    )
    await client.wait_hello_from_server()
    assert (await client.login(DOC, PASSWORD)).result == "OK"
    assert (await client.select("INBOX")).result == "OK"
    idle = await client.idle_start(timeout=30)
    await asyncio.sleep(0.2)
    await rest()
    await asyncio.sleep(1.5)  # three polls of the index: it stays closed
    assert not index_open()
    # Another process appends to the mailbox (as another worker serving its other client).
    script = (
        "import sys, pathlib; from gateway.store.mailstore import MailStore;"
        "s = MailStore(pathlib.Path(sys.argv[1]));"
        "s.append(s.folder('INBOX'), b'Subject: elsewhere\\r\\n\\r\\nx\\r\\n', []);"
        "s.close()"
    )
    subprocess.run([sys.executable, "-c", script, str(imap.inbox(DOC))], check=True, timeout=60)
    await pushed(b"1 EXISTS")
    # Rested again: a delivery to new/ is seen too (its one stat), then indexed.
    await rest()
    await asyncio.get_running_loop().run_in_executor(
        None, imap.deliver, DOC, message("delivered while resting")
    )
    await pushed(b"2 EXISTS")
    client.idle_done()
    assert (await asyncio.wait_for(idle, 5)).result == "OK"
    response = await client.fetch("1:2", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    text = b"".join(x for x in response.lines if isinstance(x, bytes | bytearray))
    assert b"Subject: elsewhere" in text and b"Subject: delivered while resting" in text
    assert (await client.logout()).result == "OK"


async def test_idle_announces_an_smtp_delivery(imap):
    import aioimaplib
    from smtp_helpers import ServerThread, submission
    from smtp_helpers import message as smtp_message

    client = aioimaplib.IMAP4_SSL(
        host="127.0.0.1", port=imap.tls_port, ssl_context=imap.client_context(), timeout=10
    )
    await client.wait_hello_from_server()
    assert (await client.login(PHARMA, PASSWORD)).result == "OK"
    assert (await client.select("INBOX")).result == "OK"
    with ServerThread(imap.config) as smtp:
        idle = await client.idle_start(timeout=20)
        await asyncio.sleep(0.2)

        def send() -> None:
            with submission(imap.config, smtp.ports["submission"]) as c:
                c.send_message(smtp_message(DOC, PHARMA, "Dispensation"))

        await asyncio.get_running_loop().run_in_executor(None, send)
        push = await asyncio.wait_for(client.wait_server_push(), 30)  # the server's own word
        assert any(b"1 EXISTS" in (p if isinstance(p, bytes) else p.encode()) for p in push)
        client.idle_done()
        assert (await asyncio.wait_for(idle, 5)).result == "OK"
    response = await client.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"Subject: Dispensation" in b"".join(
        x for x in response.lines if isinstance(x, bytes | bytearray)
    )
    assert (await client.logout()).result == "OK"


def test_renaming_the_selected_folder_keeps_it_readable(imap):
    client = login(imap)
    client.create("Projets")
    client.append("Projets", None, None, message("kept"))
    client.select("Projets")
    other = login(imap)
    assert other.rename("Projets", "Archives/2026")[0] == "OK"
    other.logout()
    _, data = client.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert data[0][1] == b"Subject: kept\r\n\r\n"
    client.noop()
    _, data = client.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert data[0][1] == b"Subject: kept\r\n\r\n"
    client.logout()


def test_a_new_keyword_is_announced_in_flags_before_use(imap):
    imap.deliver(DOC, message("one"))
    a, b = login(imap), login(imap)
    a.select("INBOX")
    b.select("INBOX")
    raw = a.untagged_responses
    raw.clear()
    a.store("1", "+FLAGS", "($Urgent)")
    assert b"$Urgent" in raw["FLAGS"][-1]
    b.untagged_responses.clear()
    b.noop()  # the other session learns the keyword before the FETCH that shows it
    assert b"$Urgent" in b.untagged_responses["FLAGS"][-1]
    assert b"$Urgent" in b.untagged_responses["FETCH"][-1]
    a.logout()
    b.logout()


def test_fetch_of_a_message_expunged_by_another_session(imap):
    imap.deliver(DOC, message("one"))
    imap.deliver(DOC, message("two"))
    a, b = login(imap), login(imap)
    a.select("INBOX")
    b.select("INBOX")
    b.store("1", "+FLAGS", r"(\Deleted)")
    b.expunge()
    typ, data = a.fetch("1:2", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "NO" and b"[EXPUNGEISSUED]" in data[-1]
    assert "EXPUNGE" not in a.untagged_responses  # numbers stay put during FETCH
    a.noop()
    assert a.untagged_responses["EXPUNGE"] == [b"1"]
    typ, data = a.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK" and data[0][1] == b"Subject: two\r\n\r\n"
    a.logout()
    b.logout()


def test_two_sessions_adopt_new_deliveries_once(imap):
    """New deliveries are indexed off the event loop, each session of the user possibly at the
    same moment: every message gets one UID, and both sessions see all of them."""
    from concurrent.futures import ThreadPoolExecutor

    clients = [login(imap), login(imap)]
    for c in clients:
        c.select("INBOX")
    for i in range(30):
        imap.deliver(DOC, message(f"burst {i}"))

    def look(c: imaplib.IMAP4_SSL) -> list[bytes]:
        c.noop()
        _, data = c.uid("SEARCH", "ALL")
        return data[0].split()

    with ThreadPoolExecutor(2) as pool:
        seen = list(pool.map(look, clients))
    before = [int(u) for u in seen[0]]
    assert seen[0] == seen[1] and len(before) >= 30
    assert len(set(before)) == len(before)
    _, data = clients[0].uid("FETCH", b",".join(seen[0][-30:]).decode(),
                             "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    subjects = {p[1].strip() for p in data if isinstance(p, tuple)}
    assert subjects == {f"Subject: burst {i}".encode() for i in range(30)}
    for c in clients:
        c.logout()
