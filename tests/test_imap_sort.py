"""SORT, ESORT, SORT=DISPLAY and THREAD (RFC 5256, 5267, 5957) through the TLS listener with
imaplib and aioimaplib; the base subject and the threading algorithm on their own."""

from __future__ import annotations

import sqlite3

import pytest
from smtp_helpers import DOCTOR, PASSWORD

from gateway.imap.threading import ThreadRow, orderedsubject_text, references
from gateway.store.mailstore import INDEX_NAME
from gateway.store.sortkeys import base_subject, extract

# The subjects of imaptest's sort-subject test (RFC 5256 2.1 corner cases).
SUBJECTS = ["a", "C", "b", "_", "[foo] Fwd: [bar] Re: fw: b (fWd)  (fwd)", "b (a)",
            "Re: [FWD: c]", "[xyz]", None]


def _append(client, header: str, body: str, date: str = "22-Feb-2008 23:00:00 +0200") -> None:
    data = (header.replace("\n", "\r\n") + "\r\n" + body + "\r\n").encode()
    typ, _ = client.append("INBOX", None, f'"{date}"', data)
    assert typ == "OK"


def test_base_subject_follows_rfc_5256():
    assert base_subject("[foo] Fwd: [bar] Re: fw: b (fWd)  (fwd)") == ("b", True)
    assert base_subject("Re: [FWD: c]") == ("c", True)
    assert base_subject("[xyz]") == ("[xyz]", False)  # a lone blob stays
    assert base_subject("[PATCH] \tRe:  Re: x") == ("x", True)
    assert base_subject("Report: y") == ("Report: y", False)
    assert base_subject("b (a)") == ("b (a)", False)
    keys = extract(b"Subject: =?utf-8?q?Re=3A_caf=C3=A9?=\r\nFrom: Zo\xc3\xa9 <z@x>\r\n\r\n", 7)
    assert keys.subject == "CAFé" and keys.reply  # i;ascii-casemap folds ASCII letters only
    assert keys.sent == 7  # no Date: the INTERNALDATE


def test_sort_by_subject_size_date_and_addresses(imap):
    client = imap.connect(DOCTOR, PASSWORD)
    for i, subject in enumerate(SUBJECTS, 1):
        header = f"Subject: {subject}\n" if subject is not None else "X-None: 1\n"
        _append(client, header, str(i) * (1 if i < 5 or i == 9 else 2))
    client.select("INBOX")
    assert "SORT" in client.capabilities and "SORT=DISPLAY" in client.capabilities
    assert client.sort("(SUBJECT)", "US-ASCII", "ALL")[1] == [b"9 1 3 5 6 2 7 8 4"]
    assert client.sort("(REVERSE SUBJECT)", "US-ASCII", "ALL")[1] == [b"4 8 2 7 6 3 5 1 9"]
    assert client.sort("(SUBJECT REVERSE SIZE)", "US-ASCII", "ALL")[1] == [b"9 1 5 3 6 7 2 8 4"]
    assert client.sort("(SUBJECT)", "UTF-8", "1:4")[1] == [b"1 3 2 4"]
    typ, data = client.uid("SORT", "(REVERSE SUBJECT)", "UTF-8", "UID", "2:4")
    assert (typ, data) == ("OK", [b"4 2 3"])
    # equal keys stay in sequence order, REVERSE or not (RFC 5256 3)
    assert client.sort("(REVERSE ARRIVAL)", "UTF-8", "2:4")[1] == [b"2 3 4"]
    with pytest.raises(client.error, match="unknown sort criterion"):
        client.sort("(COLOUR)", "UTF-8", "ALL")
    typ, data = client._simple_command("SORT", "(DATE)", "KOI8-R", "ALL")
    assert typ == "NO" and b"BADCHARSET" in data[-1]
    client.logout()

    client = imap.connect(DOCTOR, PASSWORD)
    client.create("Addresses")
    client.select("Addresses")
    for header, date in [
        ("From: Zoe <b@x>\nTo: b@x\nCc: b@x\nDate: Tue, 3 Feb 2026 08:30:00 -0100", "1-Jan-2026"),
        ("From: Adam <c@x>\nTo: c@x\nCc: c@x\nDate: Tue, 3 Feb 2026 09:00:00 +0000", "3-Jan-2026"),
        ("From: a@x\nTo: A@x\nCc: a@x\nDate: nonsense", "2-Jan-2026"),
    ]:
        typ, _ = client.append("Addresses", None, f'"{date} 00:00:00 +0000"',
                               (header.replace("\n", "\r\n") + "\r\n\r\nx\r\n").encode())
        assert typ == "OK"
    for key in ("FROM", "TO", "CC"):
        assert client.sort(f"({key})", "UTF-8", "ALL")[1] == [b"3 1 2"]
        assert client.sort(f"({key} REVERSE ARRIVAL)", "UTF-8", "ALL")[1] == [b"3 1 2"]
    # DATE: the Date header in UTC (08:30 -0100 is after 09:00 +0000), else the INTERNALDATE
    assert client.sort("(DATE)", "UTF-8", "ALL")[1] == [b"3 2 1"]
    assert client.sort("(ARRIVAL)", "UTF-8", "ALL")[1] == [b"1 3 2"]
    # DISPLAYFROM: the display name, else the address ("a@x" < "Adam" < "Zoe")
    assert client.sort("(DISPLAYFROM)", "UTF-8", "ALL")[1] == [b"3 2 1"]
    client.logout()


def test_esort_returns_esearch(imap):
    client = imap.connect(DOCTOR, PASSWORD)
    for subject in ("c", "a", "b", "d", "e"):
        _append(client, f"Subject: {subject}\n", "x")
    client.select("INBOX")
    assert "ESORT" in client.capabilities
    tag = client._command("SORT", "RETURN", "(MIN MAX ALL COUNT)", "(SUBJECT)", "UTF-8", "ALL")
    client._command_complete("SORT", tag)
    assert client.response("ESEARCH")[1] == [
        b'(TAG "' + tag + b'") MIN 2 MAX 5 ALL 2:3,1,4:5 COUNT 5']
    tag = client._command("UID", "SORT", "RETURN", "(COUNT)", "(SUBJECT)", "UTF-8", "KEYWORD",
                          "nothing")
    client._command_complete("UID", tag)
    assert client.response("ESEARCH")[1] == [b'(TAG "' + tag + b'") UID COUNT 0']
    client.logout()


THREAD_MESSAGES = [  # imaptest's "thread": a References loop the algorithm must not follow
    ("Message-ID: <a@b>\n", "22-Feb-2008 17:06:23 +0000"),
    ("Message-Id: <b@b>\nReferences: <c@b> <a@b>\n", "22-Feb-2008 15:06:23 +0000"),
    ("Message-Id: <c@b>\nReferences: <b@b>\n", "22-Feb-2008 16:06:25 +0000"),
]


def test_thread_references_and_orderedsubject(imap):
    client = imap.connect(DOCTOR, PASSWORD)
    for header, date in THREAD_MESSAGES:
        _append(client, header, "body", date)
    client.select("INBOX")
    assert {"THREAD=REFERENCES", "THREAD=ORDEREDSUBJECT"} <= set(client.capabilities)
    assert client.thread("REFERENCES", "US-ASCII", "ALL")[1] == [b"(3 1 2)"]
    client.store("1", "+FLAGS", "\\Deleted")
    client.expunge()
    assert client.thread("REFERENCES", "US-ASCII", "ALL")[1] == [b"(2 1)"]
    assert client.uid("THREAD", "REFERENCES", "UTF-8", "ALL")[1] == [b"(3 2)"]
    assert client.thread("REFERENCES", "UTF-8", "SUBJECT", "nothing")[1] == [b""]
    for subject, date in [("Re: hello", "2-Jan-2026"), ("hello", "1-Jan-2026"),
                          ("other", "3-Jan-2026"), ("Fwd: hello", "4-Jan-2026")]:
        _append(client, f"Subject: {subject}\n", "x", f"{date} 00:00:00 +0000")
    client.noop()
    # 1, 2 have no subject; 3..6 are the four above, by sent date (= INTERNALDATE here)
    assert client.thread("ORDEREDSUBJECT", "UTF-8", "3:6")[1] == [b"(4 (3)(6))(5)"]
    assert client.thread("REFERENCES", "UTF-8", "3:6")[1] == [b"(4 (3)(6))(5)"]
    client.logout()


def _row(n: int, subject: str = "", mid: str = "", refs: tuple[str, ...] = (),
         sent: int = 0) -> ThreadRow:
    base, reply = base_subject(subject)
    return (n, sent, base.upper(), int(reply), mid, " ".join(refs))


def test_references_prunes_dummies_and_groups_by_subject():
    rows = [
        _row(1, "x", "1@a", (), 10),
        _row(2, "Re: x", "2@a", ("missing@a", "1@a"), 20),  # parent 1 through a dummy link
        _row(3, "y", "3@a", ("gone@a",), 30),  # a lone dummy parent is pruned
        _row(4, "Re: y", "4@a", ("gone@a",), 40),  # siblings under one dummy root
        _row(5, "z", "", (), 5),
        _row(6, "Re: z", "", (), 50),  # same base subject, a reply: child of 5
    ]
    numbers = [r[0] for r in rows]
    assert references(numbers, rows) == "(5 6)(1 2)((3)(4))"
    assert references([n * 10 for n in numbers], rows) == "(50 60)(10 20)((30)(40))"
    subjects = [(r[0], r[0], r[2], r[1]) for r in rows]
    assert orderedsubject_text(subjects) == "(5 6)(1 2)(3 4)"
    subjects += [(7, 7, "X", 60), (8, 8, "X", 15)]
    assert orderedsubject_text(subjects) == "(5 6)(1 (8)(2)(7))(3 4)"


def test_references_loops_duplicates_and_deep_chains():
    # 1 and 2 refer to each other (no loop made); 3 repeats 1's Message-ID (a container of
    # its own); 4 has no Message-ID; the last references are what decide the parent (1.B)
    rows = [_row(1, "", "a", ("b",), 1), _row(2, "", "b", ("a",), 2), _row(3, "", "a", (), 3),
            _row(4, "", "", ("a",), 4)]
    assert references([1, 2, 3, 4], rows) == "(2 1 4)(3)"
    # a reply chain thousands deep, and one message with thousands of children: neither
    # recursion nor a quadratic walk (a THREAD of hostile mail answers)
    depth = 5000
    chain = [_row(i, "", f"m{i}", tuple(f"m{j}" for j in range(max(1, i - 3), i)), i)
             for i in range(1, depth + 1)]
    assert references(list(range(1, depth + 1)), chain) == \
        "(" + " ".join(str(i) for i in range(1, depth + 1)) + ")"
    wide = [_row(1, "", "top", (), 1)] + [_row(i, "", f"c{i}", ("top",), i)
                                          for i in range(2, depth + 1)]
    assert references(list(range(1, depth + 1)), wide) == \
        "(1 " + "".join(f"({i})" for i in range(2, depth + 1)) + ")"
    assert references([], []) == ""


def test_sort_keys_are_computed_for_messages_indexed_before_them(imap):
    """An index made before version 4 has no sort keys: the first SORT computes them."""
    client = imap.connect(DOCTOR, PASSWORD)
    for subject in ("b", "a"):
        _append(client, f"Subject: {subject}\n", "x")
    client.logout()
    index = sqlite3.connect(imap.inbox(DOCTOR) / INDEX_NAME)
    with index:
        index.execute("DELETE FROM sortkeys")
    index.close()
    imap.hooks.pool.close()  # forget the open store, as a restart would
    client = imap.connect(DOCTOR, PASSWORD)
    client.select("INBOX")
    assert client.sort("(SUBJECT)", "UTF-8", "ALL")[1] == [b"2 1"]
    client.logout()
    index = sqlite3.connect(imap.inbox(DOCTOR) / INDEX_NAME)
    assert index.execute("SELECT COUNT(*) FROM sortkeys").fetchone()[0] == 2
    index.close()


async def test_aioimaplib_sorts_and_threads(imap):
    import aioimaplib

    client = aioimaplib.IMAP4_SSL("127.0.0.1", imap.tls_port,
                                  ssl_context=imap.client_context(), timeout=15)
    await client.wait_hello_from_server()
    await client.login(DOCTOR, PASSWORD)
    for subject in ("b", "a"):
        msg = f"Subject: {subject}\r\n\r\nx\r\n".encode()
        assert (await client.append(msg, mailbox="INBOX")).result == "OK"
    await client.select("INBOX")
    proto = client.protocol
    response = await proto.execute(aioimaplib.Command(
        "SORT", proto.new_tag(), "(SUBJECT)", "UTF-8", "ALL", loop=proto.loop))
    assert response.result == "OK", response
    assert response.lines[0] == b"2 1", response.lines  # aioimaplib drops the "SORT" word
    response = await proto.execute(aioimaplib.Command(
        "THREAD", proto.new_tag(), "ORDEREDSUBJECT", "UTF-8", "ALL", loop=proto.loop))
    assert response.result == "OK" and response.lines[0] == b"(1)(2)"  # threads in date order
    await client.logout()
