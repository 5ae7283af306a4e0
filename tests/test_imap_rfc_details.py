"""Protocol details a compliance suite checks and everyday clients rarely notice: each test names
the RFC rule, talks to the real server over real TLS with imaplib, and failed before its fix."""

from __future__ import annotations

import imaplib
import re

import pytest
from imap_helpers import RunningServer, running_server
from smtp_helpers import DOCTOR, PASSWORD, setup_gateway


@pytest.fixture
def imap(gateway_home):
    setup_gateway(gateway_home)
    with running_server(gateway_home) as server:
        yield server


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
        client._simple_command("SEARCH", "RETURN", "(SAVE)", "ALL")
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
    assert b"MODSEQ (" in data[0]
    client.logout()
