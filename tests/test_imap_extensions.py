"""WITHIN, SEARCHRES, COMPRESS=DEFLATE and MULTIAPPEND through the TLS listener (imaplib and a
line-level client)."""

from __future__ import annotations

import time
import zlib

import pytest
from imap_helpers import Raw
from smtp_helpers import DOCTOR, PASSWORD

LOGIN = f'LOGIN {DOCTOR} "{PASSWORD}"'


def _date(seconds_ago: int) -> str:
    return time.strftime('"%d-%b-%Y %H:%M:%S +0000"', time.gmtime(time.time() - seconds_ago))


def test_within_searches_by_age(imap):
    """RFC 5032: OLDER n / YOUNGER n compare the INTERNALDATE with now, to the second."""
    client = imap.connect(DOCTOR, PASSWORD)
    assert "WITHIN" in client.capabilities
    for age in (3 * 86400, 2 * 3600, 60):
        assert client.append("INBOX", None, _date(age), b"Subject: x\r\n\r\nx\r\n")[0] == "OK"
    client.select("INBOX")
    assert client.search(None, "YOUNGER", "3600")[1] == [b"3"]
    assert client.search(None, "OLDER", "3600")[1] == [b"1 2"]
    assert client.search(None, "OLDER", "86400", "YOUNGER", "400000")[1] == [b"1"]
    assert client.uid("SEARCH", "NOT", "YOUNGER", "10000")[1] == [b"1"]
    with pytest.raises(client.error, match="YOUNGER"):
        client.search(None, "YOUNGER", "soon")
    client.logout()


def test_searchres_saves_a_result_for_later_commands(imap):
    """RFC 5182: SEARCH RETURN (SAVE) keeps the result as "$" for FETCH, STORE, COPY, SEARCH;
    alone it sends no ESEARCH; expunged messages leave it; SELECT empties it."""
    for i in range(1, 6):
        imap.deliver(DOCTOR, f"Subject: m{i}\r\n\r\nbody {i}\r\n".encode())
    c = Raw(imap)
    assert b"SEARCHRES" in c.cmd(LOGIN)[-1]
    c.cmd("SELECT INBOX")
    assert c.cmd("SEARCH RETURN (SAVE) 2:4") == [b"t3 OK SEARCH completed"]
    assert c.cmd("FETCH $ (UID)")[:-1] == [
        b"* 2 FETCH (UID 2)", b"* 3 FETCH (UID 3)", b"* 4 FETCH (UID 4)"]
    assert c.cmd("SEARCH $ 3:5")[:-1] == [b"* SEARCH 3 4"]
    assert c.cmd("SEARCH RETURN (SAVE MIN) $")[:-1] == [b'* ESEARCH (TAG "t6") MIN 2']
    assert c.cmd("UID FETCH $ (UID)")[:-1] == [b"* 2 FETCH (UID 2)"]  # only MIN was saved
    c.cmd("SEARCH RETURN (SAVE) 3:5")
    assert c.cmd("STORE $ +FLAGS.SILENT (\\Deleted)")[-1].startswith(b"t9 OK")
    assert c.cmd("CREATE Copies")[-1].startswith(b"t10 OK")
    assert c.cmd("COPY $ Copies")[-1].startswith(b"t11 OK [COPYUID")
    assert c.cmd("UID EXPUNGE 3")[:-1] == [b"* 3 EXPUNGE"]
    assert c.cmd("SEARCH $")[:-1] == [b"* SEARCH 3 4"]  # UIDs 4 and 5, now 3 and 4
    assert c.cmd("SEARCH RETURN (SAVE) KEYWORD nothing")[-1].startswith(b"t14 OK")
    assert c.cmd("FETCH $ (UID)") == [b"t15 OK FETCH completed"]
    c.cmd("SEARCH RETURN (SAVE) ALL")
    c.cmd("SELECT INBOX")
    assert c.cmd("SEARCH $")[:-1] == [b"* SEARCH"]
    c.close()


class Deflated(Raw):
    """Raw, compressed after COMPRESS DEFLATE (RFC 4978: raw deflate, sync flushes)."""

    def compress(self) -> list[bytes]:
        out = self.cmd("COMPRESS DEFLATE")
        self.deflate = zlib.compressobj(wbits=-15)
        self.inflate = zlib.decompressobj(wbits=-15)
        return out

    def send(self, data: bytes) -> None:
        if getattr(self, "deflate", None) is not None:
            data = self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(self.buf)
            self.wire = getattr(self, "wire", 0) + len(data)
            if getattr(self, "inflate", None) is not None:
                data = self.inflate.decompress(data)
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line


def test_compress_deflate(imap):
    imap.deliver(DOCTOR, b"Subject: big\r\n\r\n" + b"ordonnance " * 20_000 + b"\r\n")
    c = Deflated(imap)
    login = c.cmd(LOGIN)[-1]
    assert b"COMPRESS=DEFLATE" in login
    assert c.cmd("COMPRESS GZIP")[-1].startswith(b"t2 NO")
    assert c.compress() == [b"t3 OK DEFLATE active"]
    c.cmd("SELECT INBOX")
    before = c.wire
    got = c.cmd("FETCH 1 BODY.PEEK[TEXT]")
    assert got[0].count(b"ordonnance ") == 20_000
    assert c.wire - before < 10_000  # 220 kB of text crossed the wire compressed
    assert c.cmd("COMPRESS DEFLATE")[-1] == b"t6 NO [COMPRESSIONACTIVE] DEFLATE already active"
    # pipelined commands after COMPRESS are compressed too
    c.send(b"p1 NOOP\r\np2 NOOP\r\n")
    assert c.until(b"p2")[-1] == b"p2 OK NOOP completed"
    assert c.cmd("LOGOUT")[-1].startswith(b"t7 OK")
    c.close()


def test_compress_with_pipelined_command(imap):
    """Octets the client sent right after COMPRESS, in the same packet, are inflated too."""
    c = Deflated(imap)
    c.cmd(LOGIN)
    deflate = zlib.compressobj(wbits=-15)
    later = deflate.compress(b"t9 NOOP\r\n") + deflate.flush(zlib.Z_SYNC_FLUSH)
    c.sock.sendall(b"t2 COMPRESS DEFLATE\r\n" + later)
    assert c.until(b"t2") == [b"t2 OK DEFLATE active"]
    c.deflate, c.inflate = deflate, zlib.decompressobj(wbits=-15)
    c.buf = c.inflate.decompress(c.buf)
    assert c.until(b"t9") == [b"t9 OK NOOP completed"]
    c.close()


def test_multiappend_is_all_or_nothing(imap):
    """RFC 3502: several messages in one APPEND, each with its flags and date, added together;
    APPENDUID gives their UIDs; one bad message and none is added."""
    c = Raw(imap)
    assert b"MULTIAPPEND" in c.cmd(LOGIN)[-1]
    m1, m2, m3 = (f"Subject: multi {i}\r\n\r\nbody\r\n".encode() for i in range(3))
    c.send(b"t2 APPEND INBOX (\\Seen) {%d+}\r\n%s (\\Flagged) \"01-Jan-2026 10:00:00 +0100\""
           b" {%d+}\r\n%s {%d+}\r\n%s\r\n" % (len(m1), m1, len(m2), m2, len(m3), m3))
    c.n = 2
    got = c.until(b"t2")
    assert got[-1].startswith(b"t2 OK [APPENDUID ") and got[-1].split()[4] == b"1:3]"
    c.cmd("SELECT INBOX")
    flags = c.cmd("FETCH 1:3 (FLAGS INTERNALDATE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"\\Seen" in flags[0] and b"multi 0" in flags[0]
    assert b"\\Flagged" in flags[1] and b'"01-Jan-2026 10:00:00 +0100"' in flags[1]
    assert b"multi 2" in flags[2]
    # The second message is empty: nothing of the command is added.
    c.send(b"t9 APPEND INBOX {%d+}\r\n%s {0+}\r\n\r\n" % (len(m1), m1))
    assert c.until(b"t9")[-1].startswith(b"t9 NO")
    assert c.cmd("STATUS INBOX (MESSAGES)")[0] == b'* STATUS "INBOX" (MESSAGES 3)'
    c.close()
    # imaplib, one message: still an ordinary APPEND
    client = imap.connect(DOCTOR, PASSWORD)
    assert client.append("INBOX", None, None, m1)[0] == "OK"
    client.logout()


def _literal(text: str) -> bytes:
    data = text.replace("\n", "\r\n").encode()
    return b"{%d+}\r\n" % len(data) + data


def test_catenate_builds_messages_from_parts(imap):
    """RFC 4469: APPEND ... CATENATE (TEXT literal URL "/box;UIDVALIDITY=n/;UID=n/;SECTION=s")
    joins literals and stored messages or parts; a bad URL is NO [BADURL] and adds nothing; a
    missing mailbox is TRYCREATE even when a URL is bad too (imaptest's catenate cases)."""
    c = Raw(imap)
    assert b"CATENATE" in c.cmd(LOGIN)[-1]
    c.cmd("CREATE Src")
    c.cmd("CREATE Dst")
    for tag, text in (("a1", "From: foo@example.com\n\nHello world body"),
                      ("a2", "From: foo2@example.com\n\nLookslike: header\n\nAnother body")):
        c.send(tag.encode() + b" APPEND Src (\\Seen) CATENATE (TEXT " + _literal(text) + b")\r\n")
        assert c.until(tag.encode())[-1].startswith(tag.encode() + b" OK [APPENDUID ")
    uidv = c.cmd("STATUS Src (UIDVALIDITY)")[0].split()[-1].rstrip(b")").decode()

    def append(tag: str, parts: list[str | tuple[str]]) -> bytes:
        wire = b" ".join(b"TEXT " + _literal(p) if isinstance(p, str)
                         else b'URL "%s"' % p[0].encode() for p in parts)
        c.send(tag.encode() + b" APPEND Dst CATENATE (" + wire + b")\r\n")
        return c.until(tag.encode())[-1]

    assert append("b1", [("/Src/;UID=1/;SECTION=HEADER",), "body1"]).startswith(b"b1 OK")
    assert append("b2", [(f"/Src;UIDVALIDITY={uidv}/;uid=1/;section=header",), "body2"]) \
        .startswith(b"b2 OK")
    assert append("b3", [("/Src/;UID=2/;SECTION=TEXT",), "body3"]).startswith(b"b3 OK")
    assert append("b4", ["From: new@example.com\nSubject: test header\n\n",
                         ("/Src/;UID=1/;SECTION=1",), "\nsuffix"]).startswith(b"b4 OK")
    assert append("b5", [("/Src/;UID=2/;PARTIAL=100000.1",), "Hdr: foo\n\nbody7"]) \
        .startswith(b"b5 OK")
    assert append("b6", [("imaps://x/Src/;UID=1",), "x"]).startswith(b"b6 NO [BADURL")
    assert append("b7", [(f"imap://{DOCTOR}@localhost/Src/;UID=1/;SECTION=HEADER",), "body8"]) \
        .startswith(b"b7 OK")
    # a bad URL anywhere: nothing is added
    for i, parts in enumerate([
        [("/Src;UIDVALIDITY=12345/;UID=1/;SECTION=HEADER",), "body"],
        ["hdr: 1\n\n", ("/Src/;UID=1/;SECTION=HEADER",), ("/Src/;UID=99",)],
        [("imap://someone.else@localhost/Src/;UID=1",)],
    ]):
        assert append(f"n{i}", parts).startswith(f"n{i} NO [BADURL ".encode())
    c.send(b"t1 APPEND Nowhere CATENATE (URL \"/Src;UIDVALIDITY=12345/;UID=1\")\r\n")
    assert c.until(b"t1")[-1].startswith(b"t1 NO [TRYCREATE]")
    c.cmd("SELECT Dst")
    got = c.cmd("FETCH 1:* BODY.PEEK[]")
    bodies = [line.split(b"}\r\n", 1)[1][:-1] for line in got[:-1]]
    assert bodies == [
        b"From: foo@example.com\r\n\r\nbody1",
        b"From: foo@example.com\r\n\r\nbody2",
        b"Lookslike: header\r\n\r\nAnother bodybody3",
        b"From: new@example.com\r\nSubject: test header\r\n\r\nHello world body\r\nsuffix",
        b"Hdr: foo\r\n\r\nbody7",
        b"From: foo@example.com\r\n\r\nbody8",
    ]
    c.close()
