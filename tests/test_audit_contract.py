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
