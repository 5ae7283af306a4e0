"""The `OutboundQueue` contract (gateway/store/interfaces.py) for each storage backend
(tests/conftest.py STORAGE_BACKENDS): entries added through the `Intake` with the local copies
of the same message, read back, changed under their lock (held across gateways), removed."""

from __future__ import annotations

import pytest

from gateway.errors import NotFound
from gateway.runtime import storage_for
from gateway.store.queue import FAILED, PENDING, SENT, Entry, QueueError, new_queue_id

DATA = b"From: dr.martin@test.localhost\r\nSubject: x\r\n\r\nBonjour.\r\n"


@pytest.fixture
def queue(storage):
    return storage.outbound_queue()


@pytest.fixture
def intake(storage):
    i = storage.intake()
    yield i
    i.close()


async def test_entries_added_with_the_local_copies_are_read_back(storage, queue, intake):
    first, second = new_queue_id(), new_queue_id()
    await intake.commit([("ph.durand@test.localhost", DATA)],
                        [Entry(first, "dr.martin@test.localhost",
                               ["Dr.House@peer.localhost", "b@peer.localhost"], DATA)])
    intake.store([], [Entry(second, "", ["dr.martin@peer.localhost"], b"dsn", kind="dsn")])
    assert queue.ids() == [first, second]  # oldest first
    record = queue.load(first.lower())  # ids are case-insensitive
    assert record.sender == "dr.martin@test.localhost" and record.kind == "message"
    assert [(r.address, r.state) for r in record.recipients] == [
        ("dr.house@peer.localhost", PENDING), ("b@peer.localhost", PENDING)]
    assert record.next_attempt is not None
    assert queue.message(first) == DATA
    assert [r.kind for r in queue.records()] == ["message", "dsn"]
    stores = storage.mail_stores()  # the local copy of the same commit
    try:
        store = stores.acquire("ph.durand@test.localhost")
        inbox = store.folder("INBOX")
        names = store.arrivals(inbox)
        if names:
            store.adopt(inbox, names)
        assert len(store.view(inbox).uids) == 1
        stores.release("ph.durand@test.localhost")
    finally:
        stores.close()


async def test_states_change_under_the_lock_held_across_gateways(storage, queue, intake):
    qid = new_queue_id()
    await intake.commit([], [Entry(qid, "a@test.localhost", ["x@peer.localhost",
                                                              "y@peer.localhost"], DATA)])
    other = storage_for(storage.config).outbound_queue()
    with queue.locked(qid) as held:
        assert held
        with other.locked(qid) as theirs:
            assert not theirs  # another runner skips it
        record = queue.load(qid)
        record.recipients[0].state, record.recipients[0].attempts = SENT, 1
        record.recipients[1].state, record.recipients[1].last_error = FAILED, "550 no"
        queue.save(record)
    with other.locked(qid, wait=1.0) as theirs:
        assert theirs
    again = other.load(qid)
    assert [r.state for r in again.recipients] == [SENT, FAILED]
    assert again.recipients[1].last_error == "550 no" and again.pending == []
    queue.remove(qid)
    assert queue.ids() == []
    with pytest.raises(NotFound):
        queue.load(qid)
    with queue.locked(qid) as held:
        assert not held  # gone
    with pytest.raises(QueueError):
        queue.load("../etc/passwd")


def test_sweep_on_an_empty_queue(queue):
    assert queue.sweep() == 0 and queue.records() == []
