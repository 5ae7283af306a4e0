"""The SMTP part's pure pieces, without sockets: checks, DSN, queue, limits, conversations,
group commit, and the pipeline hook (through a real server)."""

from __future__ import annotations

import asyncio
import email
import json
import smtplib
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from smtp_helpers import (
    DOCTOR,
    PHARMACIST,
    PHARMACY,
    ServerThread,
    inbox,
    message,
    setup_gateway,
    submission,
)

from gateway import pipeline
from gateway.errors import NotFound
from gateway.smtp.checks import has_bare_cr_or_lf, read_headers
from gateway.smtp.conversations import Contact, Conversations
from gateway.smtp.dsn import Failure, build_dsn
from gateway.smtp.limits import RateLimiter, SharedRateLimits
from gateway.store.commit import Committer
from gateway.store.queue import Entry, Queue, QueueError, check_id, new_queue_id


@pytest.mark.parametrize(
    ("data", "bare"),
    [
        (b"a\r\nb\r\n", False),
        (b"a\nb\r\n", True),
        (b"a\r\nb\rc\r\n", True),
        (b"a\r\n.\n\r\n", True),
        (b"", False),
    ],
)
def test_bare_cr_or_lf(data, bare):
    assert has_bare_cr_or_lf(data) is bare


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary().map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")), max_size=5))
def test_crlf_only_text_is_never_flagged(lines):
    data = b"".join(line + b"\r\n" for line in lines)
    assert not has_bare_cr_or_lf(data)
    assert has_bare_cr_or_lf(data + b"x\n")


def test_read_headers_unfolds_and_finds_fin():
    data = (
        b"Received: from x\r\n\tby y\r\n"
        b"From: \"Dr Martin\" <Dr.Martin@Test.localhost>\r\n"
        b"Subject: =?utf-8?q?=5BFIN=5D?=\r\n"
        b"Message-ID: <a@b>\r\n"
        b"In-Reply-To: <c@d>\r\n"
        b"References: <e@f>\r\n <c@d>\r\n"
        b"\r\nFrom: not a header\r\n"
    )
    h = read_headers(data)
    assert h.from_addresses == ["dr.martin@test.localhost"]
    assert h.message_id == "<a@b>" and h.references == ["<c@d>", "<e@f>"]
    assert h.subject == "[FIN]" and h.mss_fin
    assert read_headers(b"X-MSS-MES: fin\r\n\r\n").mss_fin
    assert not read_headers(b"Subject: Re: [FIN]\r\n\r\n").mss_fin


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["a", "B.c", "+", "Dr ", "Martin", "'", "-", " ", "<", ">", "@",
                                 "x.fr", "\"", ",", "(c)", ":", ";", "[1.2.3.4]", "=?utf-8?q?x?="]),
                max_size=12).map("".join))
def test_from_fast_path_agrees_with_the_email_package(value):
    """The From: fast path gives what email.utils.getaddresses gives, or defers to it."""
    from email.utils import getaddresses

    expected = [a.strip().lower() for _, a in getaddresses([value.strip()]) if a.strip()]
    assert read_headers(f"From: {value}\r\n\r\n".encode()).from_addresses == expected


def test_dsn_is_a_delivery_status_report():
    data = build_dsn(
        hostname="mx.test.localhost", domain="test.localhost", sender=DOCTOR,
        queue_id="0123456789ABCDEF01234", arrival=1_700_000_000.0,
        failures=[Failure("a@peer.localhost", "5.1.1", "550 5.1.1 unknown", "mx.peer", 1.7e9)],
        original=b"Subject: Ordonnance\r\nFrom: x\r\n\r\nbody\r\n",
    )
    assert b"\n" not in data.replace(b"\r\n", b"")
    msg = email.message_from_bytes(data)
    assert msg["To"] == f"<{DOCTOR}>" and msg["Auto-Submitted"] == "auto-replied"
    text, status, headers = msg.get_payload()
    assert status.get_content_type() == "message/delivery-status"
    per_message, per_rcpt = status.get_payload()
    assert per_message["Reporting-MTA"] == "dns; mx.test.localhost"
    assert per_rcpt["Final-Recipient"] == "rfc822; a@peer.localhost"
    assert per_rcpt["Status"] == "5.1.1" and per_rcpt["Action"] == "failed"
    assert per_rcpt["Diagnostic-Code"] == "smtp; 550 5.1.1 unknown"
    assert headers.get_content_type() == "text/rfc822-headers"
    assert "Subject: Ordonnance" in headers.get_payload()


def test_queue_records_are_durable_and_locked(tmp_path):
    q = Queue(tmp_path / "q")
    qid = new_queue_id()
    q.enqueue_many([Entry(qid, DOCTOR, ["A@peer.localhost"], b"data\r\n")])
    assert q.ids() == [qid] and q.message(qid) == b"data\r\n"
    rec = q.load(qid)
    assert rec.recipients[0].address == "a@peer.localhost" and rec.pending
    rec.recipients[0].attempts = 3
    q.save(rec)
    assert json.loads((q.env / f"{qid}.json").read_text())["recipients"][0]["attempts"] == 3
    with q.locked(qid) as held, q.locked(qid) as second:
        assert held and not second
    q.remove(qid)
    assert q.ids() == [] and not list(q.msg.iterdir())
    with pytest.raises(NotFound):
        q.load(qid)
    assert list(q.tmp.iterdir()) == []


@pytest.mark.parametrize("bad", ["../../etc/passwd", "", "0123", "g" * 21])
def test_queue_ids_are_checked(bad):
    with pytest.raises(QueueError):
        check_id(bad)


def test_queue_sweep_removes_debris_only(tmp_path):
    q = Queue(tmp_path / "q").ensure()
    qid = new_queue_id()
    q.enqueue_many([Entry(qid, DOCTOR, ["a@peer.localhost"], b"x")])
    (q.tmp / "leftover").write_bytes(b"x")
    (q.msg / new_queue_id()).write_bytes(b"orphan")
    assert q.sweep(older_than=-1) == 2
    assert q.ids() == [qid] and q.message(qid) == b"x"


def test_rate_limiter_token_bucket(tmp_path):
    """`per_minute` messages at once, then one more every 60/per_minute seconds; keys and scopes
    are counted apart; 0 means no limit."""
    now = [1000.0]
    shared = SharedRateLimits(tmp_path / "limits.map", clock=lambda: now[0])
    limiter = RateLimiter(shared, "client", 2)
    assert limiter.hit("a") is None and limiter.hit("a") is None
    assert limiter.hit("a") == pytest.approx(30.0)
    assert limiter.hit("b") is None
    assert RateLimiter(shared, "account", 2).hit("a") is None
    now[0] += 29.0
    assert limiter.hit("a") == pytest.approx(1.0)
    now[0] += 1.5
    assert limiter.hit("a") is None and limiter.hit("a") is not None
    assert RateLimiter(shared, "client", 0).hit("a") is None
    assert RateLimiter(None, "client", 2).hit("a") is None


def _hit_twice(path: str) -> list[float | None]:
    from pathlib import Path

    limiter = RateLimiter(SharedRateLimits(Path(path)), "client", 3)
    return [limiter.hit("127.0.0.1"), limiter.hit("127.0.0.1")]


def test_rate_limits_are_shared_by_worker_processes(tmp_path):
    """Two processes (as two `mssgw serve` workers) count against the same limit."""
    import multiprocessing

    path = tmp_path / "limits.map"
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.apply(_hit_twice, (str(path),)) == [None, None]
    limiter = RateLimiter(SharedRateLimits(path), "client", 3)
    assert limiter.hit("127.0.0.1") is None
    assert limiter.hit("127.0.0.1") is not None
    assert limiter.hit("::1") is None


def test_rate_limit_table_stays_bounded(tmp_path):
    """More keys than slots: idle keys make room, nothing grows, new keys are served."""
    from gateway.smtp import limits

    now = [0.0]
    shared = SharedRateLimits(tmp_path / "limits.map", clock=lambda: now[0])
    limiter = RateLimiter(shared, "client", 1)
    for i in range(limits.SLOTS + 100):
        assert limiter.hit(f"10.0.{i // 256}.{i % 256}") is None
    assert (tmp_path / "limits.map").stat().st_size == limits.SLOTS * limits._SLOT.size
    now[0] = 61.0
    assert limiter.hit("10.0.0.0") is None and limiter.hit("10.0.0.0") is not None


def test_conversations(tmp_path):
    c = Conversations.open(tmp_path / "db.sqlite")
    patient = "p@patient.x"
    assert not c.has_written(DOCTOR, patient)
    c.record(DOCTOR, [patient], "<m1@x>", [], False)
    assert c.has_written(DOCTOR, patient) and not c.has_written(PHARMACY, patient)
    assert c.closed_thread(patient, ["<m1@x>"]) is None
    c.record(DOCTOR, [patient], "<m2@x>", ["<m1@x>"], True)
    assert c.closed_thread(patient, ["<m2@x>"]) == "<m1@x>"
    assert c.closed_thread(patient, ["<m1@x>"]) == "<m1@x>"
    assert c.closed_thread(patient, ["<other@x>"]) is None
    assert c.closed_thread("q@patient.x", ["<m1@x>"]) is None


async def test_group_commit_batches_concurrent_commits(tmp_path):
    committer = Committer(Queue(tmp_path / "q"))
    folders = [tmp_path / "mb" / f"u{i % 3}" for i in range(40)]
    try:
        paths = await asyncio.gather(
            *[committer.commit([(f, f"m{i}".encode())]) for i, f in enumerate(folders)]
        )
    finally:
        committer.close()
    files = [Path(p[0]) for p in paths]
    assert [f.read_bytes() for f in files] == [f"m{i}".encode() for i in range(40)]
    assert all(f.parent.name == "new" for f in files)
    assert committer.committed == 40 and committer.batches < 40


async def test_group_commit_failure_is_per_message(tmp_path):
    committer = Committer(None)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    try:
        good, bad = await asyncio.gather(
            committer.commit([(tmp_path / "ok", b"1")]),
            committer.commit([(blocker / "x", b"2")]),
            return_exceptions=True,
        )
    finally:
        committer.close()
    assert isinstance(bad, OSError)
    assert Path(good[0]).read_bytes() == b"1"


@pytest.fixture
def gw(gateway_home):
    config = setup_gateway(gateway_home)
    with ServerThread(config) as server:
        yield config, server


def test_pipeline_rejection_sends_a_dsn(gw, monkeypatch):
    config, server = gw

    async def refuse_pharmacy(pipe: pipeline.Pipeline, msg: pipeline.Message,
                              outcome: pipeline.Outcome):
        assert pipe is server.gw.pipeline and pipe.config == config
        assert msg.authenticated == DOCTOR and msg.channel == "submission"
        assert msg.data.startswith(b"Received: ")
        return outcome.reject(PHARMACY, "5.6.0", "the prescription could not be read")

    monkeypatch.setattr(server.gw.pipeline, "steps", [refuse_pharmacy])
    with submission(config, server.ports["submission"]) as c:
        c.send_message(message(DOCTOR, f"{PHARMACY}, {PHARMACIST}", "Ordonnance"))
    assert len(inbox(config, PHARMACIST)) == 1 and inbox(config, PHARMACY) == []
    [dsn] = inbox(config, DOCTOR)
    assert b"report-type=delivery-status" in dsn.data
    assert f"Final-Recipient: rfc822; {PHARMACY}".encode() in dsn.data
    assert b"the prescription could not be read" in dsn.data and b"Status: 5.6.0" in dsn.data


def test_pipeline_failure_is_temporary_and_stores_nothing(gw, monkeypatch):
    config, server = gw

    async def broken(pipe, msg, outcome):
        raise RuntimeError("bug")

    monkeypatch.setattr(server.gw.pipeline, "steps", [broken])
    with submission(config, server.ports["submission"]) as c, pytest.raises(
        smtplib.SMTPDataError
    ) as err:
        c.send_message(message(DOCTOR, PHARMACIST))
    assert err.value.smtp_code == 451 and b"4.3.0" in err.value.smtp_error
    assert inbox(config, PHARMACIST) == [] and inbox(config, DOCTOR) == []


async def test_run_cpu_uses_a_process_pool(gateway_home):
    import os

    from gateway.config import load_config

    pipe = pipeline.Pipeline(load_config(gateway_home / "config.toml"))
    try:
        pid = await pipe.run_cpu(os.getpid)
        assert pid != os.getpid()
        assert await pipe.run_cpu(sum, [1, 2, 3]) == 6
        # Two calls at once run in two processes: one computes while the other waits.
        both = await asyncio.gather(*(pipe.run_cpu(_pid_after, 0.3) for _ in range(2)))
        assert len(set(both)) == 2
    finally:
        pipe.shutdown()


def _pid_after(seconds: float) -> int:
    import os
    import time

    time.sleep(seconds)
    return os.getpid()


@pytest.mark.parametrize(("cores", "workers", "expected"), [
    (2, 0, 2),  # the default: a worker per core, two pool processes each
    (2, 2, 2),
    (2, 1, 2),
    (8, 2, 4),  # fewer workers than cores: the pools take the other cores
    (8, 8, 2),
    (1, 1, 2),  # never fewer than two, so an fsync wait does not idle the core
])
def test_pool_size(monkeypatch, cores, workers, expected):
    import os

    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    assert pipeline.pool_size(workers) == expected


async def test_group_commit_records_conversations_with_the_batch(tmp_path):
    conversations = Conversations.open(tmp_path / "db.sqlite")
    calls: list[int] = []

    def record_many(contacts):
        calls.append(len(contacts))
        conversations.record_many(contacts)

    committer = Committer(None, notes=record_many)
    patients = [f"p{i}@patient.x" for i in range(20)]
    try:
        paths = await asyncio.gather(*[
            committer.commit([(tmp_path / "mb" / p, b"m")],
                             note=Contact(DOCTOR, (p,), f"<m{i}@x>", (), False))
            for i, p in enumerate(patients)
        ])
    finally:
        committer.close()
    assert all(Path(p[0]).read_bytes() == b"m" for p in paths)
    assert all(conversations.has_written(DOCTOR, p) for p in patients)
    assert sum(calls) == 20 and len(calls) < 20  # whole batches in one transaction


async def test_group_commit_note_failure_fails_only_noted_messages(tmp_path):
    def record_many(contacts):
        raise sqlite3.OperationalError("database is locked")

    committer = Committer(None, notes=record_many)
    try:
        # The first commit starts a batch at once; the next two wait and form the next one.
        _, noted, plain = await asyncio.gather(
            committer.commit([(tmp_path / "c", b"0")]),
            committer.commit([(tmp_path / "a", b"1")], note="contact"),
            committer.commit([(tmp_path / "b", b"2")]),
            return_exceptions=True,
        )
    finally:
        committer.close()
    assert isinstance(noted, sqlite3.OperationalError)
    assert list((tmp_path / "a" / "new").iterdir()) == []  # nothing published, nothing left
    assert list((tmp_path / "a" / "tmp").iterdir()) == []
    assert Path(plain[0]).read_bytes() == b"2"


def test_config_is_pickled_once_and_rebuilt_once(tmp_path):
    """Every call into the process pool sends the configuration: the same object pickles to
    the same bytes (computed once), which rebuild an equal configuration, once per process."""
    import dataclasses
    import pickle

    from gateway.config import Config, SMTPSection

    config = Config(home=tmp_path, smtp=SMTPSection(max_recipients=7))
    data = pickle.dumps(config)
    assert pickle.dumps(config) == data
    copy = pickle.loads(data)
    assert copy == config and copy is not config
    assert copy.smtp.max_recipients == 7 and copy.database_path == config.database_path
    assert pickle.loads(pickle.dumps(config)) is copy  # rebuilt once
    changed = dataclasses.replace(config, smtp=SMTPSection(max_recipients=9))
    assert pickle.loads(pickle.dumps(changed)).smtp.max_recipients == 9
