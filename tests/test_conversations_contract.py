"""The `ConversationLog` contract (gateway/smtp/conversations.py) for each storage backend
(tests/conftest.py STORAGE_BACKENDS): who wrote to which patient, and the closed threads."""

from __future__ import annotations

import pytest

from gateway.runtime import storage_for
from gateway.smtp.conversations import Contact

PATIENT = "279035121518989@patient.test.localhost"


@pytest.fixture
def log(storage):
    c = storage.conversations()
    yield c
    c.close()


def test_a_professional_who_wrote_first_may_be_answered(log):
    assert not log.has_written("dr.martin@test.localhost", PATIENT)
    log.record_many([Contact("Dr.Martin@test.localhost", (PATIENT.upper(),), "<m1@x>", (),
                             False)])
    assert log.has_written("dr.martin@test.localhost", PATIENT)
    assert not log.has_written("ph.durand@test.localhost", PATIENT)


def test_a_closed_thread_is_found_by_any_message_in_it(storage, log):
    log.record_many([
        Contact("dr@test.localhost", (PATIENT,), "<first@x>", (), False),
        Contact("dr@test.localhost", (PATIENT,), "<second@x>", ("<first@x>",), False),
    ])
    assert log.closed_thread(PATIENT, ["<second@x>"]) is None
    log.record_many([Contact("dr@test.localhost", (PATIENT,), "<fin@x>", ("<second@x>",), True)])
    other = storage_for(storage.config).conversations()  # another gateway on the store
    try:
        assert other.closed_thread(PATIENT, ["<second@x>"]) == "<first@x>"
        assert other.closed_thread(PATIENT, ["<unknown@x>"]) is None
        assert other.closed_thread(PATIENT, []) is None
    finally:
        other.close()
