"""The command logic without sockets: hostile command streams always get an answer.

Hypothesis drives the parser and the session with random command sequences over an in-memory
channel: every command gets exactly one tagged answer (or the session ends with BYE), nothing
raises, and the mailbox stays usable afterwards.
"""

from __future__ import annotations

import asyncio
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.imap.parser import Command, CommandReader, Continue, Reject
from gateway.imap.session import Hooks, Login, Session
from gateway.store.mailstore import StorePool


class MemoryChannel:
    def __init__(self) -> None:
        self.out: list[bytes] = []

    def send(self, data: bytes) -> None:
        self.out.append(data)

    async def flush(self) -> None:
        return None

    async def read_line(self, timeout: float | None) -> bytes | None:
        return b"DONE"


async def _login(address: str, password: str, ip: str) -> Login:
    return Login(address.lower())


def _session(tmp_path) -> tuple[Session, MemoryChannel, StorePool]:
    pool = StorePool(tmp_path / "mailboxes")
    channel = MemoryChannel()
    hooks = Hooks(pool=pool, authenticate=_login)
    return Session(hooks, channel, tls=True), channel, pool


async def run(session: Session, data: bytes) -> None:
    reader = CommandReader(max_line=4096, max_literal=4096)
    reader.feed(data)
    while (ev := reader.next_event()) is not None and not session.closing:
        if isinstance(ev, Reject):
            session.reject(ev.tag, ev.text, ev.code)
            if ev.fatal:
                break
        elif isinstance(ev, Command):
            await session.handle(ev)
            if session.push_interval() is not None:  # what the silent client would be told
                await session.push()
        elif isinstance(ev, Continue):
            session.io.send(b"+ go ahead\r\n")


FIXTURE = [HealthCheck.function_scoped_fixture]  # the mailbox persists across examples: fine

ARGS = st.sampled_from(
    [
        "INBOX", '"Sent"', "1", "1:*", "*", "0", "4294967297", "(FLAGS)", "(\\Seen)", "FLAGS",
        "+FLAGS", "-FLAGS.SILENT", "BODY[]", "BODY.PEEK[1.2.MIME]<0.5>", "BODY[HEADER.FIELDS (A)]",
        "(UID ENVELOPE BODYSTRUCTURE)", "ALL", "OR", "NOT", "SUBJECT", '"x"', "{3+}\r\nabc",
        "(CHANGEDSINCE 1)", "(UNCHANGEDSINCE 0)", "NIL", '""', "Trash", "a/b", "../x", "%", "*",
        "(MESSAGES UNSEEN)", "CHARSET", "UTF-8", "\\Deleted", "$kw", "(", ")", "[", "CONDSTORE",
        # the extensions added for the compliance suite
        "RETURN", "(MIN MAX COUNT)", "()", "BINARY[1]", "BINARY.SIZE[]", "~{3+}\r\na\x00c",
        "QRESYNC", "(QRESYNC (1 1 1:*))", "(CHANGEDSINCE 1 VANISHED)", "(SUBSCRIBED)",
        "(RECURSIVEMATCH SUBSCRIBED)", "(STATUS (MESSAGES))", "(CHILDREN)",
        # NOTIFY (RFC 5465)
        "SET", "STATUS", "NONE", "(SELECTED (MessageNew (UID BODY.PEEK[]) MessageExpunge))",
        "(SELECTED-DELAYED (MessageNew MessageExpunge FlagChange))", "(PERSONAL (MailboxName))",
        "(SUBTREE (INBOX a/b) (MessageNew MessageExpunge SubscriptionChange))",
        "(MAILBOXES Trash NONE)", "(INBOXES (AnnotationChange))",
    ]
)
VERBS = st.sampled_from(
    [
        "NOOP", "CAPABILITY", "SELECT", "EXAMINE", "CREATE", "DELETE", "RENAME", "SUBSCRIBE",
        "LIST", "LSUB", "STATUS", "APPEND", "CHECK", "CLOSE", "UNSELECT", "EXPUNGE", "SEARCH",
        "FETCH", "STORE", "COPY", "MOVE", "UID FETCH", "UID STORE", "UID SEARCH", "UID EXPUNGE",
        "UID MOVE", "ENABLE", "ID", "NAMESPACE", "IDLE", "XYZZY", "STARTTLS", "LOGIN", "NOTIFY",
        "NOTIFY SET", "NOTIFY SET STATUS",
    ]
)
COMMAND = st.tuples(VERBS, st.lists(ARGS, max_size=4))


@settings(max_examples=100, deadline=None, suppress_health_check=FIXTURE)
@given(st.lists(COMMAND, min_size=1, max_size=12))
def test_random_command_sequences_always_get_answers(tmp_path, commands):
    session, channel, pool = _session(tmp_path)
    session.login = Login("fuzz@test.localhost")
    session.store = pool.acquire("fuzz@test.localhost")
    session.store.append(session.store.folder("INBOX"), b"Subject: x\r\n\r\nbody\r\n", [])
    data = b"".join(
        f"f{i} {verb}{''.join(' ' + a for a in args)}\r\n".encode()
        for i, (verb, args) in enumerate(commands)
    )
    asyncio.run(run(session, data))
    text = b"".join(channel.out)
    assert b"SERVERBUG" not in text, text
    tags = re.findall(rb"^(f\d+) (?:OK|NO|BAD)", text, re.M)
    if not session.closing:
        # Commands whose literal swallowed the next line may merge; never more answers than asked.
        assert 1 <= len(tags) <= len(commands)
    session.close()
    pool.close()


@settings(max_examples=100, deadline=None, suppress_health_check=FIXTURE)
@given(st.binary(max_size=400))
def test_random_bytes_after_login(tmp_path, data):
    session, channel, pool = _session(tmp_path)
    session.login = Login("fuzz@test.localhost")
    session.store = pool.acquire("fuzz@test.localhost")
    asyncio.run(run(session, data + b"\r\nz1 NOOP\r\n"))
    assert b"SERVERBUG" not in b"".join(channel.out)
    session.close()
    pool.close()
