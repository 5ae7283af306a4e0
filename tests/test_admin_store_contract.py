"""The `AdminStore` contract (gateway/admins/store.py) for each storage backend (tests/conftest.py
STORAGE_BACKENDS): accounts, their unique names and certificates, the atomic failure count and
TOTP step, tokens, sessions and one-time login links; everything shared by every worker and
gateway on the store."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from gateway.admins.model import ApiToken, Role, Session
from gateway.admins.store import DuplicateAdmin
from gateway.runtime import storage_for

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


@pytest.fixture
def store(storage):
    s = storage.admin_store()
    yield s
    s.close()


@pytest.fixture
def other(storage):
    """The same store as another worker (or gateway) sees it."""
    s = storage_for(storage.config).admin_store()
    yield s
    s.close()


def token(id_: str, admin: str, created: float, **kw: object) -> ApiToken:
    return ApiToken(id=id_, admin=admin, label="label " + id_, scopes=("mailboxes:read", "*:read"),
                    created_at=at(created), expires_at=at(created + 86400), created_by="root",
                    **kw)  # type: ignore[arg-type]


def test_accounts_are_added_read_listed_changed_and_deleted(store, other):
    store.add_account("bob", Role.AUDITOR, None, None, "ab" * 32, at(0))
    store.add_account("alice", Role.ADMINISTRATOR, "$scrypt$hash", "SECRET", None, at(1))
    acc = other.account("alice")
    assert acc.admin.name == "alice" and acc.admin.role is Role.ADMINISTRATOR
    assert acc.admin.active and acc.admin.has_password and acc.admin.has_totp
    assert acc.admin.created_at == at(1) and acc.admin.last_login_at is None
    assert (acc.password_hash, acc.totp_secret, acc.totp_last_step) == (
        "$scrypt$hash", "SECRET", -1)
    assert (acc.failures, acc.first_failure_at, acc.admin.locked_until) == (0, None, None)
    assert store.account("nobody") is None
    assert other.account_by_certificate("ab" * 32).admin.name == "bob"
    assert store.account_by_certificate("cd" * 32) is None
    assert [a.name for a in other.accounts()] == ["alice", "bob"]
    store.update_account("alice", role=Role.AUDITOR.value, active=False, last_login_at=at(5),
                         locked_until=at(60), cert_sha256="cd" * 32, totp_secret=None)
    acc = other.account("alice")
    assert acc.admin.role is Role.AUDITOR and not acc.admin.active and not acc.admin.has_totp
    assert acc.admin.last_login_at == at(5) and acc.admin.locked_until == at(60)
    assert other.account_by_certificate("cd" * 32).admin.name == "alice"
    store.update_account("alice", locked_until=None, active=True)
    acc = other.account("alice")
    assert acc.admin.locked_until is None and acc.admin.active
    with pytest.raises(ValueError):
        store.update_account("alice", created_at=at(9))  # set once, by add_account
    store.delete_account("bob")
    assert other.account("bob") is None and other.account_by_certificate("ab" * 32) is None


def test_a_name_or_a_certificate_belongs_to_one_account(store, other):
    store.add_account("alice", Role.ADMINISTRATOR, "h", None, "ab" * 32, at(0))
    with pytest.raises(DuplicateAdmin) as err:
        other.add_account("alice", Role.AUDITOR, "h2", None, None, at(1))
    assert err.value.field == "name"
    with pytest.raises(DuplicateAdmin) as err:
        other.add_account("bob", Role.AUDITOR, "h2", None, "ab" * 32, at(1))
    assert err.value.field == "certificate"
    assert store.account("bob") is None  # nothing written
    store.add_account("bob", Role.AUDITOR, "h2", None, None, at(1))
    with pytest.raises(DuplicateAdmin) as err:
        other.update_account("bob", cert_sha256="ab" * 32)
    assert err.value.field == "certificate"
    assert store.account("alice").admin.role is Role.ADMINISTRATOR  # unchanged


def test_failures_count_within_their_window_and_every_parallel_one_counts(store, other):
    store.add_account("alice", Role.ADMINISTRATOR, "h", None, None, at(0))
    assert store.count_failure("alice", at(10), window_start=at(10 - 900)) == 1
    assert other.count_failure("alice", at(20), window_start=at(20 - 900)) == 2
    acc = store.account("alice")
    assert acc.failures == 2 and acc.first_failure_at == at(10)
    # The window (from the first failure) has passed: the count starts again.
    assert store.count_failure("alice", at(1000), window_start=at(1000 - 900)) == 1
    assert store.account("alice").first_failure_at == at(1000)
    assert store.count_failure("nobody", at(0), window_start=at(-900)) == 0
    # A burst from two workers at once: every failure counted, none lost.
    stores = [store, other]

    def fail(s) -> None:  # type: ignore[no-untyped-def]
        for _ in range(10):
            s.count_failure("alice", at(1001), window_start=at(1001 - 900))

    threads = [threading.Thread(target=fail, args=(s,)) for s in stores for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.account("alice").failures == 41
    store.update_account("alice", failures=0, first_failure_at=None)
    assert other.count_failure("alice", at(1002), window_start=at(1002 - 900)) == 1


def test_a_totp_step_is_taken_once_and_only_forward(store, other):
    store.add_account("alice", Role.ADMINISTRATOR, "h", "SECRET", None, at(0))
    assert store.take_totp_step("alice", 100)
    assert not other.take_totp_step("alice", 100)  # the same code again
    assert not other.take_totp_step("alice", 99)  # an older one
    assert other.account("alice").totp_last_step == 100
    results: list[bool] = []
    threads = [threading.Thread(target=lambda s=s: results.append(s.take_totp_step("alice", 101)))
               for s in (store, other, store, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, False, True]
    assert not store.take_totp_step("nobody", 1)


def test_tokens_are_kept_listed_newest_first_and_updated(store, other):
    store.add_account("alice", Role.ADMINISTRATOR, "h", None, None, at(0))
    store.add_account("eve", Role.AUDITOR, "h", None, None, at(0))
    store.add_token(token("000000000001", "alice", 10), "d1" * 32)
    store.add_token(token("000000000002", "eve", 20), "d2" * 32)
    store.add_token(token("000000000003", "alice", 30), "d3" * 32)
    found, digest = other.token("000000000002")
    assert digest == "d2" * 32 and found == token("000000000002", "eve", 20)
    assert found.scopes == ("mailboxes:read", "*:read")
    assert other.token("999999999999") is None
    assert [t.id for t in other.tokens()] == ["000000000003", "000000000002", "000000000001"]
    assert [t.id for t in other.tokens("alice")] == ["000000000003", "000000000001"]
    store.update_token("000000000001", revoked_at=at(40), last_used_at=at(35))
    changed, _ = other.token("000000000001")
    assert changed.revoked_at == at(40) and changed.last_used_at == at(35)
    with pytest.raises(ValueError):
        store.update_token("000000000001", admin="eve")
    store.delete_account("alice")  # its tokens go with it
    assert [t.id for t in other.tokens()] == ["000000000002"]


def test_sessions_are_found_by_digest_moved_on_and_swept(store, other):
    store.add_account("alice", Role.ADMINISTRATOR, "h", None, None, at(0))
    store.add_account("eve", Role.AUDITOR, "h", None, None, at(0))
    store.add_session("s1" * 32, Session("alice", "csrf1", at(0), at(1800)))
    store.add_session("s2" * 32, Session("alice", "csrf2", at(0), at(100)))
    store.add_session("s3" * 32, Session("eve", "csrf3", at(0), at(1800)))
    found = other.session("s1" * 32)
    assert (found.admin, found.csrf, found.created_at, found.expires_at) == (
        "alice", "csrf1", at(0), at(1800))
    assert found.secret == ""  # the store never has the cookie itself
    assert other.session("zz" * 32) is None
    store.touch_session("s1" * 32, at(3000))
    assert other.session("s1" * 32).expires_at == at(3000)
    assert other.delete_sessions(before=at(101)) == 1  # s2 had expired
    assert store.session("s2" * 32) is None and store.session("s3" * 32) is not None
    store.delete_session("s3" * 32)
    assert other.session("s3" * 32) is None
    store.add_session("s4" * 32, Session("alice", "csrf4", at(0), at(1800)))
    assert other.delete_sessions("alice") == 2
    assert store.session("s1" * 32) is None and store.session("s4" * 32) is None
    store.add_session("s5" * 32, Session("eve", "csrf5", at(0), at(1800)))
    store.delete_account("eve")  # its sessions go with it
    assert other.session("s5" * 32) is None


def test_a_login_link_is_taken_once_and_never_after_it_expired(store, other):
    store.add_account("demo", Role.ADMINISTRATOR, "h", None, None, at(0))
    store.add_login_link("l1" * 32, "demo", at(3600))
    store.add_login_link("l2" * 32, "demo", at(60))
    store.add_login_link("l3" * 32, "demo", at(60))
    assert other.take_login_link("l1" * 32, at(10)) == "demo"
    assert store.take_login_link("l1" * 32, at(11)) is None  # used
    assert store.take_login_link("l2" * 32, at(61)) is None  # expired
    assert store.take_login_link("zz" * 32, at(62)) is None
    # Expired links are swept by any take: l3 is gone even for a clock that would accept it.
    assert other.take_login_link("l3" * 32, at(30)) is None
    store.add_login_link("l4" * 32, "demo", at(3600))
    results: list[str | None] = []
    threads = [threading.Thread(target=lambda s=s: results.append(s.take_login_link("l4" * 32,
                                                                                    at(100))))
               for s in (store, other, store, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("demo") == 1 and results.count(None) == 3
