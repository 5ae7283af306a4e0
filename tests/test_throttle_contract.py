"""The `LoginThrottle` contract (gateway/directory/throttle.py) for each storage backend
(tests/conftest.py STORAGE_BACKENDS): failures counted per scope and key within a window,
purged, cleared; verified logins live until they expire and only for the hash they were made
for; everything shared by every process and gateway on the store."""

from __future__ import annotations

import pytest

from gateway.runtime import storage_for


@pytest.fixture
def throttle(storage):
    t = storage.login_throttle()
    yield t
    t.close()


@pytest.fixture
def other(storage):
    """The same store as another gateway (or worker) sees it."""
    t = storage_for(storage.config).login_throttle()
    yield t
    t.close()


def test_failures_are_counted_within_the_window(throttle):
    assert throttle.recent("account", "a@x", 0.0) == (0, None)
    throttle.record([("account", "a@x"), ("client", "192.0.2.1")], at=100.0, keep_since=0.0)
    throttle.record([("account", "a@x"), ("client", "192.0.2.2")], at=200.0, keep_since=0.0)
    assert throttle.recent("account", "a@x", 0.0) == (2, 100.0)
    assert throttle.recent("account", "a@x", 150.0) == (1, 200.0)
    assert throttle.recent("client", "192.0.2.1", 0.0) == (1, 100.0)
    assert throttle.recent("client", "a@x", 0.0) == (0, None)  # scopes are apart


def test_old_failures_are_purged_and_a_success_clears_the_account(throttle):
    throttle.record([("account", "a@x"), ("account", "b@x")], at=100.0, keep_since=0.0)
    throttle.record([("account", "b@x")], at=500.0, keep_since=400.0)  # forgets before 400
    assert throttle.recent("account", "a@x", 0.0) == (0, None)
    assert throttle.recent("account", "b@x", 0.0) == (1, 500.0)
    throttle.clear("account", "b@x")
    assert throttle.recent("account", "b@x", 0.0) == (0, None)


def test_verified_logins_expire_and_follow_the_stored_hash(throttle):
    key, digest = b"k" * 32, b"d" * 32
    assert throttle.verified_until(key, digest, now=0.0) is None
    throttle.add_verified(key, digest, expires=400.0, now=100.0)
    assert throttle.verified_until(key, digest, now=399.0) == 400.0
    assert throttle.verified_until(key, b"e" * 32, now=200.0) is None  # a new password
    assert throttle.verified_until(key, digest, now=400.0) is None  # expired
    throttle.add_verified(key, digest, expires=900.0, now=500.0)  # renewed
    assert throttle.verified_until(key, digest, now=800.0) == 900.0


def test_a_lockout_and_a_verified_login_hold_across_gateways(throttle, other):
    for at in (1.0, 2.0, 3.0):
        throttle.record([("account", "a@x")], at=at, keep_since=0.0)
    assert other.recent("account", "a@x", 0.0) == (3, 1.0)
    other.add_verified(b"k" * 32, b"d" * 32, expires=50.0, now=4.0)
    assert throttle.verified_until(b"k" * 32, b"d" * 32, now=5.0) == 50.0
    other.clear("account", "a@x")
    assert throttle.recent("account", "a@x", 0.0) == (0, None)
