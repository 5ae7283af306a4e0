"""The sans-IO IMAP command parser: literals, strings, lists, limits; fuzzed with hypothesis."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.imap.parser import (
    Atom,
    Command,
    CommandReader,
    Continue,
    RawLine,
    Reject,
    parse_sequence_set,
)


def events(data: bytes, **limits) -> list:
    r = CommandReader(**limits)
    r.feed(data)
    out = []
    while (ev := r.next_event()) is not None:
        out.append(ev)
    return out


def test_simple_command_with_quoted_and_atoms():
    [cmd] = events(b'a1 LOGIN "dr \\"x\\"@y" secret\r\n')
    assert cmd == Command("a1", "LOGIN", [b'dr "x"@y', Atom("secret")])


def test_lists_and_fetch_sections_are_single_tokens():
    [cmd] = events(b"a2 UID fetch 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.100>)\r\n")
    assert cmd.name == "UID"
    assert cmd.args == [
        Atom("fetch"),
        Atom("1:*"),
        [Atom("FLAGS"), Atom("BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.100>")],
    ]


def test_synchronising_literal_asks_for_continuation_then_completes():
    r = CommandReader()
    r.feed(b"a3 APPEND INBOX (\\Seen) {11}\r\n")
    assert isinstance(r.next_event(), Continue)
    assert r.next_event() is None
    r.feed(b"Hello")
    assert r.next_event() is None
    r.feed(b" world\r\n")
    cmd = r.next_event()
    assert cmd == Command("a3", "APPEND", [Atom("INBOX"), [Atom("\\Seen")], b"Hello world"])


def test_non_synchronising_literal_needs_no_continuation():
    evs = events(b"a4 LOGIN {3+}\r\nbob {4+}\r\npass\r\n")
    assert evs == [Command("a4", "LOGIN", [b"bob", b"pass"])]


def test_literal_containing_crlf_and_parentheses():
    evs = events(b"a5 SEARCH (SUBJECT {4+}\r\n(\r\n) FROM x)\r\n")
    assert evs == [Command("a5", "SEARCH", [[Atom("SUBJECT"), b"(\r\n)", Atom("FROM"), Atom("x")]])]


def test_too_large_synchronising_literal_is_refused_without_continuation():
    r = CommandReader(max_literal=100)
    r.feed(b"a6 APPEND INBOX {1000}\r\na7 NOOP\r\n")
    ev = r.next_event()
    assert isinstance(ev, Reject) and ev.tag == "a6" and ev.code == "TOOBIG" and not ev.fatal
    assert r.next_event() == Command("a7", "NOOP", [])


def test_too_large_non_synchronising_literal_is_fatal():
    [ev] = events(b"a8 APPEND INBOX {1000+}\r\n", max_literal=100)
    assert isinstance(ev, Reject) and ev.fatal


def test_long_line_is_refused_and_the_next_command_still_parses():
    r = CommandReader(max_line=1000)
    r.feed(b"a9 NOOP " + b"x" * 5000)
    ev = r.next_event()
    assert isinstance(ev, Reject) and "too long" in ev.text
    r.feed(b"yyy\r\nb1 NOOP\r\n")
    assert r.next_event() == Command("b1", "NOOP", [])


def test_deep_nesting_is_refused():
    [ev] = events(b"c1 SEARCH " + b"(" * 100 + b"ALL" + b")" * 100 + b"\r\n")
    assert isinstance(ev, Reject) and ev.tag == "c1" and "nested" in ev.text


def test_malformed_commands_get_reasons():
    evs = events(b'\r\n* NOOP\r\nd1 LOGIN "open\r\nd2 FETCH 1 (FLAGS\r\nd3 123\r\n')
    assert [type(e) for e in evs] == [Reject] * 5
    assert [e.tag for e in evs] == [None, None, "d1", "d2", "d3"]
    assert "quoted" in evs[2].text and "list" in evs[3].text


def test_raw_line_mode_for_authenticate_and_idle():
    r = CommandReader()
    r.expect_line()
    r.feed(b"AGJvYgBwYXNz\r\nDONE\r\n")
    assert r.next_event() == RawLine(b"AGJvYgBwYXNz")
    assert isinstance(r.next_event(), Reject)  # "DONE" alone is not a command


def test_sequence_sets():
    assert parse_sequence_set("1:3,5,7:*") == [(1, 3), (5, 5), (7, 0)]
    assert parse_sequence_set("*") == [(0, 0)]
    for bad in ("", "0", "1:", ",1", "a", "1:0", "4294967296"):
        assert parse_sequence_set(bad) is None, bad


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_bytes_never_raise(data):
    r = CommandReader(max_line=200, max_literal=100, max_command=400)
    r.feed(data)
    for _ in range(1000):
        ev = r.next_event()
        if ev is None:
            break
        assert isinstance(ev, Command | Continue | Reject | RawLine)
        if isinstance(ev, Reject):
            assert ev.text


_token = st.recursive(
    st.one_of(
        st.from_regex(r"[A-Za-z0-9\\.$:*,]{1,8}", fullmatch=True),
        st.binary(max_size=20).map(lambda b: b'"' + re.sub(rb'[\\"\r\n\0]', b"", b) + b'"'),
        st.binary(max_size=20).map(lambda b: b"{%d+}\r\n" % len(b) + b),
    ).map(lambda x: x if isinstance(x, bytes) else x.encode()),
    lambda children: st.lists(children, max_size=4).map(lambda xs: b"(" + b" ".join(xs) + b")"),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_token, max_size=6))
def test_fuzz_well_formed_commands_parse(tokens):
    line = b"t1 CMD" + b"".join(b" " + t for t in tokens) + b"\r\n"
    evs = events(line)
    assert len(evs) == 1
    ev = evs[0]
    assert isinstance(ev, Command), ev
    assert ev.tag == "t1" and len(ev.args) == len(tokens)
