"""The Authenticator the SMTP and IMAP servers call: cache, suspension, lockouts, passwords."""

from __future__ import annotations

import asyncio

import pytest

from gateway.config import AuthSection, load_config
from gateway.db import connect
from gateway.directory import open_directory
from gateway.directory.auth import Authenticator, AuthReason, FailureLog, client_key
from gateway.directory.model import Application
from gateway.directory.passwords import (
    WeakPassword,
    check_new_password,
    hash_password,
    verify_password,
)

D = "test.localhost"
PASSWORD = "correct horse battery"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


SECRET = b"the supervisor's secret, shared by its workers"


@pytest.fixture
def setup(gateway_home):
    config = load_config(gateway_home / "config.toml")
    directory = open_directory(config)
    for name in ("alice", "bob"):
        directory.add_application(f"{name}@{D}", Application(name))
        directory.set_password(f"{name}@{D}", PASSWORD)
    clock = Clock()
    settings = AuthSection(
        cache_ttl=300, account_max_failures=3, account_window=600,
        client_max_failures=5, client_window=900,
    )
    auth = Authenticator(
        directory, FailureLog(connect(config.database_path)), settings, clock=clock,
        secret=SECRET,
    )
    return directory, auth, clock


def test_hash_format_and_verify():
    encoded = hash_password(PASSWORD)
    assert encoded.startswith("$scrypt$ln=14,r=8,p=1$")
    assert PASSWORD not in encoded
    assert verify_password(PASSWORD, encoded)
    assert not verify_password(PASSWORD + "x", encoded)
    assert hash_password(PASSWORD) != encoded  # fresh salt each time
    assert not verify_password(PASSWORD, None)
    assert not verify_password(PASSWORD, "$scrypt$ln=30,r=8,p=1$AAAA$AAAA")  # absurd cost
    assert not verify_password(PASSWORD, "plain-text")


def test_new_password_rules():
    check_new_password("twelve chars")
    for bad, rule in (("short", "too short"), (" padded password ", "spaces"),
                      ("x" * 2000, "too long"), ("line\nbreak password", "line breaks")):
        with pytest.raises(WeakPassword, match=rule):
            check_new_password(bad)


async def test_ok_then_cached(setup):
    directory, auth, clock = setup
    first = await auth.authenticate(f"Alice@{D}", PASSWORD, "192.0.2.1")
    assert first.ok and not first.cached
    assert first.mailbox is not None and first.mailbox.address == f"alice@{D}"
    second = await auth.authenticate(f"alice@{D}", PASSWORD, "192.0.2.1")
    # a hit skips scrypt (bench/bench_directory.py measures how much faster that is)
    assert second.ok and second.cached
    # the cache never accepts another password
    wrong = await auth.authenticate(f"alice@{D}", PASSWORD + "!", "192.0.2.1")
    assert wrong.reason is AuthReason.BAD_PASSWORD
    # and it expires
    clock.now += 301
    assert not (await auth.authenticate(f"alice@{D}", PASSWORD, "192.0.2.1")).cached


async def test_cached_login_refused_when_suspended(setup):
    directory, auth, _ = setup
    assert (await auth.authenticate(f"alice@{D}", PASSWORD, "192.0.2.1")).ok
    directory.suspend(f"alice@{D}")
    r = await auth.authenticate(f"alice@{D}", PASSWORD, "192.0.2.1")
    assert r.reason is AuthReason.SUSPENDED and not r.ok
    directory.resume(f"alice@{D}")
    assert (await auth.authenticate(f"alice@{D}", PASSWORD, "192.0.2.1")).ok


async def test_cached_login_refused_after_password_change(setup):
    directory, auth, _ = setup
    assert (await auth.authenticate(f"alice@{D}", PASSWORD, "192.0.2.1")).ok
    directory.set_password(f"alice@{D}", "another long password")
    r = await auth.authenticate(f"alice@{D}", PASSWORD, "192.0.2.1")
    assert r.reason is AuthReason.BAD_PASSWORD
    assert (await auth.authenticate(f"alice@{D}", "another long password", "192.0.2.1")).ok


async def test_unknown_and_deleted(setup):
    directory, auth, _ = setup
    assert (await auth.authenticate(f"nobody@{D}", PASSWORD, "192.0.2.1")).reason \
        is AuthReason.UNKNOWN
    assert (await auth.authenticate(f"alice@{D}", PASSWORD, "192.0.2.1")).ok
    directory.delete(f"alice@{D}")
    assert (await auth.authenticate(f"alice@{D}", PASSWORD, "192.0.2.1")).reason \
        is AuthReason.UNKNOWN


async def test_no_password_set(setup):
    directory, auth, _ = setup
    directory.add_application(f"carol@{D}", Application("carol"))
    assert (await auth.authenticate(f"carol@{D}", "", "192.0.2.1")).reason \
        is AuthReason.BAD_PASSWORD


async def test_account_lockout_and_unlock(setup):
    _, auth, clock = setup
    for i in range(3):
        r = await auth.authenticate(f"alice@{D}", f"wrong {i}", f"192.0.2.{i}")
        assert r.reason is AuthReason.BAD_PASSWORD
        clock.now += 10
    # locked: even the right password, from another client, is refused without hashing
    locked = await auth.authenticate(f"alice@{D}", PASSWORD, "198.51.100.7")
    assert locked.reason is AuthReason.LOCKED_OUT
    assert locked.retry_after == pytest.approx(600 - 30)
    # other accounts are not affected
    assert (await auth.authenticate(f"bob@{D}", PASSWORD, "198.51.100.7")).ok
    # after the window the account is unlocked, and a success clears its failures
    clock.now += 600
    assert (await auth.authenticate(f"alice@{D}", PASSWORD, "198.51.100.7")).ok
    assert (await auth.authenticate(f"alice@{D}", "wrong", "198.51.100.7")).reason \
        is AuthReason.BAD_PASSWORD


async def test_cache_does_not_bypass_lockout(setup):
    _, auth, _ = setup
    assert (await auth.authenticate(f"alice@{D}", PASSWORD, "192.0.2.1")).ok
    for _ in range(3):
        await auth.authenticate(f"alice@{D}", "wrong password", "192.0.2.1")
    assert (await auth.authenticate(f"alice@{D}", PASSWORD, "192.0.2.1")).reason \
        is AuthReason.LOCKED_OUT


async def test_client_lockout(setup):
    directory, auth, clock = setup
    for i in range(5):  # spread over accounts (some unknown) so no account locks first
        await auth.authenticate(f"user{i}@{D}", "guess", "203.0.113.9")
    r = await auth.authenticate(f"bob@{D}", PASSWORD, "203.0.113.9")
    assert r.reason is AuthReason.LOCKED_OUT
    assert (await auth.authenticate(f"bob@{D}", PASSWORD, "203.0.113.10")).ok
    clock.now += 901
    assert (await auth.authenticate(f"bob@{D}", PASSWORD, "203.0.113.9")).ok


async def test_lockout_shared_between_authenticators(setup, gateway_home):
    """Two worker processes each have their own Authenticator: the count is shared."""
    directory, auth, clock = setup
    config = load_config(gateway_home / "config.toml")
    other = Authenticator(
        open_directory(config), FailureLog(connect(config.database_path)), auth.settings,
        clock=clock,
    )
    await auth.authenticate(f"alice@{D}", "wrong", "192.0.2.1")
    await other.authenticate(f"alice@{D}", "wrong", "192.0.2.2")
    await auth.authenticate(f"alice@{D}", "wrong", "192.0.2.3")
    assert (await other.authenticate(f"alice@{D}", PASSWORD, "192.0.2.4")).reason \
        is AuthReason.LOCKED_OUT


async def test_scrypt_does_not_block_the_event_loop(setup):
    _, auth, _ = setup
    ticks = 0
    stop = asyncio.Event()

    async def ticker():
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    results = await asyncio.gather(
        *(auth.authenticate(f"bob@{D}", f"wrong {i}", f"192.0.2.{i}") for i in range(2))
    )
    stop.set()
    await task
    assert all(r.reason is AuthReason.BAD_PASSWORD for r in results)
    assert ticks >= 5  # the loop kept running while two scrypt checks ran


def test_sync_variant(setup):
    _, auth, _ = setup
    assert auth.authenticate_sync(f"alice@{D}", PASSWORD, "192.0.2.1").ok
    assert auth.authenticate_sync(f"alice@{D}", PASSWORD, "192.0.2.1").cached


def test_client_key():
    assert client_key("192.0.2.1") == "192.0.2.1"
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert client_key("2001:db8::1") == client_key("2001:db8::ffff") == "2001:db8::/64"
    assert client_key(None) == "unknown"


async def test_expired_failures_are_purged(setup):
    _, auth, clock = setup
    for i in range(10):  # an attacker trying many addresses
        await auth.authenticate(f"guess{i}@{D}", "x", f"198.51.100.{i}")
    rows = auth.failures.conn.execute("SELECT count(*) FROM auth_failure").fetchone()[0]
    assert rows == 20  # one per account and one per client address
    clock.now += 901
    await auth.authenticate(f"bob@{D}", "wrong", "192.0.2.1")
    rows = auth.failures.conn.execute("SELECT count(*) FROM auth_failure").fetchone()[0]
    assert rows == 2


def _worker(setup_auth: Authenticator, gateway_home, secret: bytes = b"") -> Authenticator:
    """Another worker process's Authenticator: its own connections and in-memory cache, and
    the secret of the supervisor it was forked from (the same as `setup`'s unless given)."""
    config = load_config(gateway_home / "config.toml")
    return Authenticator(
        open_directory(config), FailureLog(connect(config.database_path)), setup_auth.settings,
        clock=setup_auth.clock, secret=secret or SECRET,
    )


async def test_a_login_verified_by_one_worker_is_cached_for_the_others(setup, gateway_home):
    directory, auth, clock = setup
    other = _worker(auth, gateway_home)
    assert not (await auth.authenticate(f"alice@{D}", PASSWORD, "192.0.2.1")).cached
    second = await other.authenticate(f"Alice@{D}", PASSWORD, "192.0.2.2")
    assert second.ok and second.cached  # no scrypt: found in the shared table
    wrong = await other.authenticate(f"alice@{D}", PASSWORD + "!", "192.0.2.2")
    assert wrong.reason is AuthReason.BAD_PASSWORD
    # The database holds no password and nothing to test one against without the key.
    rows = auth.failures.conn.execute("SELECT key, hash_digest FROM auth_verified").fetchall()
    assert len(rows) == 1
    assert PASSWORD.encode() not in rows[0][0] + rows[0][1]

    # Suspension and a new password apply to the shared entries at once.
    directory.suspend(f"alice@{D}")
    third = _worker(auth, gateway_home)
    assert (await third.authenticate(f"alice@{D}", PASSWORD, "192.0.2.3")).reason \
        is AuthReason.SUSPENDED
    directory.resume(f"alice@{D}")
    directory.set_password(f"alice@{D}", "another long password")
    assert not (await third.authenticate(f"alice@{D}", PASSWORD, "192.0.2.3")).ok
    # ... and expiry: an entry older than cache_ttl is verified again.
    assert not (await third.authenticate(f"alice@{D}", "another long password", "x")).cached
    clock.now += 301
    assert not (await _worker(auth, gateway_home).authenticate(
        f"alice@{D}", "another long password", "x")).cached


async def test_a_process_with_another_secret_does_not_use_the_shared_entries(
    setup, gateway_home
):
    _, auth, _ = setup
    assert (await auth.authenticate(f"bob@{D}", PASSWORD, "192.0.2.1")).ok
    # Not forked from the same supervisor: another secret.
    stranger = _worker(auth, gateway_home, secret=b"another supervisor's secret")
    first = await stranger.authenticate(f"bob@{D}", PASSWORD, "192.0.2.1")
    assert first.ok and not first.cached
