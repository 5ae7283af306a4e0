"""Administrator accounts: `mssgw admin`, password + TOTP logins, lockout, sessions, API tokens.

Through the real SQLite store and audit log; the clock is moved by hand where a rule is about
time (session expiry, token expiry, lockout window, TOTP steps)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from directory_cli import Cli

from gateway import audit
from gateway.admins import open_accounts, totp
from gateway.admins.accounts import caller_for
from gateway.admins.model import Caller, Forbidden, LockedOut, Role, Unauthenticated
from gateway.config import load_config

PASSWORD = "correct horse battery"


@pytest.fixture
def cli(gateway_home, capsys):
    return Cli(gateway_home, capsys)


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def forward(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
def accounts(gateway_home):
    config = load_config(gateway_home / "config.toml")
    acc = open_accounts(config)
    acc.now = clock = Clock()
    acc.clock = clock  # type: ignore[attr-defined]
    yield acc
    acc.close()


def test_admin_add_prints_the_totp_secret_once_and_logs_in_with_it(cli, gateway_home):
    r = cli.ok("admin", "add", "alice", stdin=PASSWORD + "\n")
    secret = re.search(r"TOTP secret \(shown once\): ([A-Z2-7]+)", r.out).group(1)
    assert "otpauth://totp/mssgw%3Aalice?secret=" + secret in r.out
    assert PASSWORD not in r.out
    listed = cli.ok("admin", "list", "--json").json()
    assert listed[0]["name"] == "alice" and listed[0]["role"] == "administrator"
    assert listed[0]["totp"] is True and "password_hash" not in str(listed)
    cli.fails("admin", "add", "alice", stdin=PASSWORD + "\n", match="already exists")
    cli.fails("admin", "add", "bob", stdin="short\n", match="password: too short")
    cli.fails("admin", "add", "Bad Name", stdin=PASSWORD + "\n", match="name: 'Bad Name'")
    config = load_config(gateway_home / "config.toml")
    acc = open_accounts(config)
    admin = acc.login("alice", PASSWORD, totp.code(secret))
    acc.close()
    assert admin.name == "alice" and admin.role is Role.ADMINISTRATOR
    (entry,) = [e for e in audit.read(config, action="admin.add")]
    assert entry.target == "alice"


def test_second_factor_required_replay_refused_and_lockout(accounts):
    _, secret = accounts.add(Caller.local("root"), "alice", "administrator", password=PASSWORD)
    clock = accounts.clock
    with pytest.raises(Unauthenticated, match="wrong name, password or code"):
        accounts.login("alice", PASSWORD, "")  # the password alone is not enough
    code = totp.code(secret, clock.now.timestamp())
    accounts.login("alice", PASSWORD, code)
    with pytest.raises(Unauthenticated):  # the same code twice: refused
        accounts.login("alice", PASSWORD, code)
    with pytest.raises(Unauthenticated, match="wrong name, password or code"):
        accounts.login("nobody", PASSWORD, code)  # unknown: the same answer
    for _ in range(4):
        with pytest.raises(Unauthenticated):
            accounts.login("alice", "wrong password!!", code)
    clock.forward(60)
    with pytest.raises(LockedOut, match="locked until"):  # 5 failures: locked, even when right
        accounts.login("alice", PASSWORD, totp.code(secret, clock.now.timestamp()))
    clock.forward(accounts.settings.lockout + 1)
    assert accounts.login("alice", PASSWORD, totp.code(secret, clock.now.timestamp()))


def test_sessions_expire_when_idle_and_at_their_maximum(accounts):
    admin, _ = accounts.add(Caller.local("root"), "alice", "auditor", password=PASSWORD)
    clock = accounts.clock
    session = accounts.start_session(admin)
    assert accounts.session(session.secret)[1].name == "alice"
    assert accounts.session("forged") is None
    clock.forward(accounts.settings.session_idle - 10)
    assert accounts.session(session.secret) is not None  # activity moves the idle expiry on
    clock.forward(accounts.settings.session_idle - 10)
    assert accounts.session(session.secret) is not None
    clock.forward(accounts.settings.session_idle + 1)
    assert accounts.session(session.secret) is None  # idle too long
    other = accounts.start_session(admin)
    for _ in range(accounts.settings.session_max // 600 + 1):
        clock.forward(600)
        accounts.session(other.secret)
    assert accounts.session(other.secret) is None  # absolute expiry, however active
    third = accounts.start_session(admin)
    accounts.set_active(Caller.local("root"), "alice", False)
    assert accounts.session(third.secret) is None  # a disabled account's sessions end


def test_tokens_are_scoped_expiring_revocable_and_created_by_administrators(accounts):
    root = Caller.local("root")
    admin, _ = accounts.add(root, "alice", "administrator", password=PASSWORD)
    auditor, _ = accounts.add(root, "eve", "auditor", password=PASSWORD)
    token, secret = accounts.create_token(caller_for(admin, "console"), "eve", "audit export",
                                          ["audit:read"], days=2)
    owner, checked = accounts.check_token(secret)
    caller = caller_for(owner, "api", checked)
    assert caller.actor == f"admin:eve (token {token.id})"
    assert caller.allows("audit") and not caller.allows("mailboxes")
    with pytest.raises(Forbidden, match="scope: this token does not grant mailboxes:read"):
        caller.require("mailboxes")
    with pytest.raises(Forbidden, match="auditor"):
        caller.require("audit", write=True)
    with pytest.raises(Forbidden, match="auditor"):  # an auditor creates no token
        accounts.create_token(caller_for(auditor, "console"), "eve", "x", ["*:read"])
    with pytest.raises(Unauthenticated):
        accounts.check_token(secret[:-2] + "xx")
    with pytest.raises(Exception, match="scope: 'everything' is invalid"):
        accounts.create_token(root, "alice", "x", ["everything"])
    accounts.clock.forward(2 * 86400 + 1)
    with pytest.raises(Unauthenticated, match="is expired"):
        accounts.check_token(secret)
    _, fresh = accounts.create_token(root, "alice", "provisioning", ["mailboxes:write"])
    accounts.check_token(fresh)
    accounts.revoke_token(root, fresh.split("_")[1])
    with pytest.raises(Unauthenticated, match="is revoked"):
        accounts.check_token(fresh)


def test_one_time_login_link_works_once(accounts):
    accounts.add(Caller.local("root"), "demo", "administrator", password=PASSWORD)
    link = accounts.login_link(Caller.local("root"), "demo")
    assert accounts.use_login_link(link).name == "demo"
    with pytest.raises(Unauthenticated, match="unknown, used or expired"):
        accounts.use_login_link(link)
    late = accounts.login_link(Caller.local("root"), "demo", minutes=1)
    accounts.clock.forward(61)
    with pytest.raises(Unauthenticated):
        accounts.use_login_link(late)


def test_totp_matches_rfc_6238_test_vector():
    # RFC 6238 appendix B, SHA-1 seed "12345678901234567890", T = 59 s: 94287082 (8 digits);
    # its last 6 digits are what a 6-digit authenticator shows.
    import base64

    secret = base64.b32encode(b"12345678901234567890").decode()
    assert totp.code(secret, 59) == "287082"
    assert totp.code(secret, 1111111109) == "081804"
    assert totp.verify(secret, "287 082", at=59) == 1
    assert totp.verify(secret, "287082", last_step=1, at=59) == -1
