"""The `AuditLog` contract (gateway/audit.py) for each storage backend (tests/conftest.py
STORAGE_BACKENDS): entries read back in order and filtered, a unit of work's entries held and
written together, each thread holding its own."""

from __future__ import annotations

import threading

import pytest


@pytest.fixture
def log(storage):
    a = storage.audit_log()
    yield a
    a.close()


def test_entries_read_back_in_order_and_filtered(log):
    log.record("alice", "dmp.read", "279035121518989", {"document": "doc-1"})
    log.record("bob", "directory.add", "x@test.localhost", {"kind": "APP"})
    log.record("alice", "dmp.submit", "279035121518989", {})
    entries = list(log.read())
    assert [(e.actor, e.action, e.target) for e in entries] == [
        ("alice", "dmp.read", "279035121518989"),
        ("bob", "directory.add", "x@test.localhost"),
        ("alice", "dmp.submit", "279035121518989"),
    ]
    assert entries[0].details == {"document": "doc-1"} and entries[0].at.tzinfo is not None
    assert [e.action for e in log.read(action="dmp.")] == ["dmp.read", "dmp.submit"]
    assert [e.action for e in log.read(action="dmp.read")] == ["dmp.read"]
    assert [e.actor for e in log.read(target="x@test.localhost")] == ["bob"]


def test_held_entries_are_written_at_the_end_of_the_block(log):
    with log.held():
        log.record("gateway", "prescription.register", "ID1", {"patient": "1"})
        with log.held():  # nested: the outer block writes
            log.record("gateway", "dmp.submit", "1", {})
        assert list(log.read()) == []
    assert [e.action for e in log.read()] == ["prescription.register", "dmp.submit"]


def test_held_entries_are_written_when_the_block_fails(log):
    with pytest.raises(RuntimeError), log.held():
        log.record("gateway", "prescription.dispense", "ID1", {"outcome": "refused"})
        raise RuntimeError("the unit of work failed")
    assert [e.details for e in log.read()] == [{"outcome": "refused"}]


def test_each_thread_holds_its_own_entries(log):
    """One log shared by a worker's threads: a thread's held block does not swallow another
    thread's entries."""
    started, release = threading.Event(), threading.Event()

    def other() -> None:
        started.wait(10)
        log.record("imap", "mailbox.read", "p@patient.test.localhost", {})
        release.set()

    t = threading.Thread(target=other)
    t.start()
    with log.held():
        log.record("gateway", "prescription.register", "ID1", {})
        started.set()
        release.wait(10)
        assert [e.action for e in log.read()] == ["mailbox.read"]
    t.join(10)
    assert [e.action for e in log.read()] == ["mailbox.read", "prescription.register"]


def test_a_query_finds_one_page_newest_first_and_counts(log):
    """What the API and the console ask: one window of the matching entries, newest first,
    with the total, without reading the whole log."""
    from datetime import UTC, datetime, timedelta

    from gateway.audit import AuditFilter

    start = datetime.now(UTC)
    for i in range(30):
        log.record("admin:alice" if i % 2 else "gateway", "directory.add" if i % 3 else "pki.issue",
                   f"m{i:02d}@test.localhost", {"n": i, "note": "Compte rendu" if i == 7 else ""})
    entries, total = log.query(AuditFilter(), offset=0, limit=5)
    assert [e.target for e in entries] == [f"m{i:02d}@test.localhost" for i in (29, 28, 27, 26, 25)]
    assert total == 30
    entries, total = log.query(AuditFilter(actor="admin:alice", action="directory."), offset=2,
                               limit=3)
    expected = [i for i in range(29, -1, -1) if i % 2 and i % 3]
    assert [e.details["n"] for e in entries] == expected[2:5] and total == len(expected)
    entries, total = log.query(AuditFilter(action="pki.issue"), offset=7, limit=5)
    assert [e.details["n"] for e in entries] == [6, 3, 0] and total == 10
    entries, total = log.query(AuditFilter(target="m07@test.localhost"), offset=0, limit=5)
    assert [e.details["n"] for e in entries] == [7] and total == 1
    assert log.query(AuditFilter(since=start + timedelta(days=1)), offset=0, limit=5) == ([], 0)
    assert log.query(AuditFilter(since=start), offset=0, limit=50)[1] == 30
    # Words anywhere in the entry, any case; the total may be left uncounted (None) when the
    # page is full, never wrong.
    entries, total = log.query(AuditFilter(words=("compte", "rendu")), offset=0, limit=5)
    assert [e.details["n"] for e in entries] == [7] and total in (1, None)
    entries, total = log.query(AuditFilter(words=("alice",)), offset=0, limit=5)
    assert [e.details["n"] for e in entries] == [29, 27, 25, 23, 21] and total in (15, None)
    entries, total = log.query(AuditFilter(words=("alice",), action="pki."), offset=0, limit=50)
    assert [e.details["n"] for e in entries] == [27, 21, 15, 9, 3] and total in (5, None)
    # New entries are seen by the next query.
    log.record("gateway", "pki.revoke", "m07@test.localhost", {})
    entries, total = log.query(AuditFilter(target="m07@test.localhost"), offset=0, limit=5)
    assert [e.action for e in entries] == ["pki.revoke", "directory.add"] and total == 2
