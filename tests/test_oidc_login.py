"""Token logins through the real listeners: SMTP submission (smtplib) and IMAP (imaplib) with
SASL OAUTHBEARER and XOAUTH2, tokens from a real OpenID provider (node-oidc-provider, CIBA
flow: tests/oidc_provider.py), over real TLS on 127.0.0.1."""

from __future__ import annotations

import base64
import contextlib
import imaplib
import json
import logging
import smtplib
import socket
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from oidc_provider import (
    AUDIENCE,
    OTHER,
    SHORT,
    STRANGER_RPPS,
    OpenIDProvider,
    national_id,
    new_signing_key,
)
from smtp_helpers import (
    DOCTOR,
    PASSWORD,
    PHARMACIST,
    PHARMACY,
    PRACTICE,
    ROBOT,
    ServerThread,
    client_context,
    setup_gateway,
)

from gateway.config import Config
from gateway.directory import demo, open_directory

DOCTOR_ID = national_id(demo.DOCTOR_RPPS)
PHARMACIST_ID = national_id(demo.PHARMACIST_RPPS)


def oauthbearer(address: str, token: str) -> str:
    """RFC 7628's client message (with the optional host and port fields)."""
    authz = f"a={address}" if address else ""
    return f"n,{authz},\x01host=127.0.0.1\x01port=587\x01auth=Bearer {token}\x01\x01"


def xoauth2(address: str, token: str) -> str:
    return f"user={address}\x01auth=Bearer {token}\x01\x01"


MESSAGES = {"OAUTHBEARER": oauthbearer, "XOAUTH2": xoauth2}


class Sasl:
    """The authobject smtplib and imaplib call: the message first, then the answer to an error
    challenge (a lone kvsep for OAUTHBEARER, nothing for XOAUTH2), keeping the errors seen."""

    def __init__(self, mechanism: str, address: str, token: str) -> None:
        self.mechanism = mechanism
        self.message = MESSAGES[mechanism](address, token)
        self.errors: list[dict[str, str]] = []

    def __call__(self, challenge: bytes | None = None) -> str:
        if not challenge:
            return self.message
        self.errors.append(json.loads(challenge))
        return "\x01" if self.mechanism == "OAUTHBEARER" else ""


def _oidc(idp: OpenIDProvider, **extra: object) -> str:
    lines = [f'issuer = "{idp.issuer}"', f'audience = "{AUDIENCE}"',
             f'ca_file = "{idp.ca_file}"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    return "\n[oidc]\n" + "\n".join(lines) + "\n"


@pytest.fixture
def gateway(
    gateway_home: Path, openid_provider: OpenIDProvider, request: pytest.FixtureRequest
) -> Iterator[tuple[Config, ServerThread]]:
    marker = request.node.get_closest_marker("oidc")
    extra = dict(marker.kwargs) if marker else {}
    auth = extra.pop("auth", "")
    config = setup_gateway(gateway_home, extra=_oidc(openid_provider, **extra) + auth)
    with ServerThread(config, imap=True) as server:
        yield config, server


def smtp(config: Config, server: ServerThread, *, implicit: bool = False) -> smtplib.SMTP:
    if implicit:
        client = smtplib.SMTP_SSL("127.0.0.1", server.ports["submission-tls"],
                                  context=client_context(config), timeout=30)
    else:
        client = smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=30)
        client.starttls(context=client_context(config))
    client.ehlo("client.test")
    return client


def imap(config: Config, server: ServerThread) -> imaplib.IMAP4_SSL:
    return imaplib.IMAP4_SSL("127.0.0.1", server.ports["imap tls"],
                             ssl_context=client_context(config), timeout=30)


def _smtp_login(config: Config, server: ServerThread, sasl: Sasl) -> tuple[int, str]:
    with smtp(config, server) as client:
        try:
            code, text = client.auth(sasl.mechanism, sasl, initial_response_ok=True)
        except smtplib.SMTPAuthenticationError as exc:
            code, text = exc.smtp_code, exc.smtp_error
        return code, text.decode() if isinstance(text, bytes) else text


def _imap_login(config: Config, server: ServerThread, sasl: Sasl) -> tuple[str, str]:
    client = imap(config, server)
    try:
        typ, data = client.authenticate(sasl.mechanism, sasl)
        return typ, data[0].decode()
    except imaplib.IMAP4.error as exc:
        return "NO", str(exc)
    finally:
        with contextlib.suppress(imaplib.IMAP4.abort, OSError):
            client.logout()


# --- logging in ----------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["OAUTHBEARER", "XOAUTH2"])
def test_smtp_token_login_then_send(
    gateway: tuple[Config, ServerThread], openid_provider: OpenIDProvider, mechanism: str
) -> None:
    config, server = gateway
    token = openid_provider.token(DOCTOR_ID)
    for implicit in (False, True):
        with smtp(config, server, implicit=implicit) as client:
            assert "OAUTHBEARER" in client.esmtp_features["auth"].split()
            assert "XOAUTH2" in client.esmtp_features["auth"].split()
            code, _ = client.auth(mechanism, Sasl(mechanism, DOCTOR, token),
                                  initial_response_ok=implicit)
            assert code == 235
            msg = EmailMessage()
            msg["From"], msg["To"], msg["Subject"] = DOCTOR, PHARMACIST, "token login"
            msg.set_content("Bonjour")
            assert client.send_message(msg) == {}
            with pytest.raises(smtplib.SMTPRecipientsRefused):  # still the doctor's rules
                client.sendmail(DOCTOR, ["nobody@test.localhost"], msg.as_bytes())


@pytest.mark.parametrize("mechanism", ["OAUTHBEARER", "XOAUTH2"])
def test_imap_token_login(
    gateway: tuple[Config, ServerThread], openid_provider: OpenIDProvider, mechanism: str
) -> None:
    config, server = gateway
    token = openid_provider.token(DOCTOR_ID)
    client = imap(config, server)
    try:
        caps = client.capabilities
        assert "AUTH=OAUTHBEARER" in caps and "AUTH=XOAUTH2" in caps and "SASL-IR" in caps
        typ, _ = client.authenticate(mechanism, Sasl(mechanism, DOCTOR, token))  # "+ " first
        assert typ == "OK"
        assert client.select("INBOX")[0] == "OK"
    finally:
        client.logout()
    # SASL-IR: the message on the AUTHENTICATE line itself.
    client = imap(config, server)
    try:
        ir = base64.b64encode(MESSAGES[mechanism](DOCTOR, token).encode()).decode()
        typ, _ = client._simple_command("AUTHENTICATE", mechanism, ir)
        assert typ == "OK"
        client.state = "AUTH"
        assert client.select("INBOX")[0] == "OK"
    finally:
        client.logout()


def test_without_authzid_the_token_decides(
    gateway: tuple[Config, ServerThread], openid_provider: OpenIDProvider
) -> None:
    config, server = gateway
    token = openid_provider.token(PHARMACIST_ID)
    code, _ = _smtp_login(config, server, Sasl("OAUTHBEARER", "", token))
    assert code == 235
    assert _imap_login(config, server, Sasl("OAUTHBEARER", "", token))[0] == "OK"


def test_organisational_mailbox_through_the_directory(
    gateway: tuple[Config, ServerThread], openid_provider: OpenIDProvider,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A professional the directory lists in a structure opens its ORG mailbox; no one else."""
    config, server = gateway
    doctor, pharmacist = openid_provider.token(DOCTOR_ID), openid_provider.token(PHARMACIST_ID)
    assert _smtp_login(config, server, Sasl("OAUTHBEARER", PHARMACY, pharmacist))[0] == 235
    assert _imap_login(config, server, Sasl("XOAUTH2", PHARMACY, pharmacist))[0] == "OK"
    assert _smtp_login(config, server, Sasl("XOAUTH2", PRACTICE, doctor))[0] == 235
    with caplog.at_level(logging.INFO, "mssgw.oidc"):
        code, text = _smtp_login(config, server, Sasl("OAUTHBEARER", PHARMACY, doctor))
    assert code == 535 and "may not open this mailbox" in text
    assert "reason=wrong-professional" in caplog.text
    # An APP mailbox logs in with its certificate, never with a token.
    code, text = _smtp_login(config, server, Sasl("OAUTHBEARER", ROBOT, doctor))
    assert code == 535


# --- refusals --------------------------------------------------------------------------------


def _forged(idp: OpenIDProvider, how: str) -> str:
    token = idp.token(DOCTOR_ID)
    head, body, sig = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    if how == "tampered":  # the doctor's token made to name the pharmacist
        payload["preferred_username"] = PHARMACIST_ID
        new = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
        return f"{head}.{new}.{sig}"
    if how == "alg-none":
        none = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
        return f"{none}.{body}."
    assert how == "key-not-in-jwks"
    return jwt.encode({"alg": "RS256", "kid": "not-the-providers", "typ": "at+jwt"}, payload,
                      RSAKey.import_key(new_signing_key("not-the-providers")))


REFUSALS = {
    # case: (how to get the token, address to open, reason logged, status, client message)
    "expired": ("expired", DOCTOR, "expired", "invalid_token", "expired"),
    "wrong-audience": ("other", DOCTOR, "wrong-audience", "invalid_token", "not issued for"),
    "key-not-in-jwks": ("key-not-in-jwks", DOCTOR, "unknown-key", "invalid_token", "not valid"),
    "another-professional": ("pharmacist", DOCTOR, "wrong-professional", "insufficient_scope",
                             "may not open this mailbox"),
    "not-in-directory": ("stranger", DOCTOR, "unknown-professional", "insufficient_scope",
                         "no mailbox here"),
    "tampered": ("tampered", PHARMACIST, "bad-signature", "invalid_token", "not valid"),
    "alg-none": ("alg-none", DOCTOR, "algorithm-not-allowed", "invalid_token", "not valid"),
    "suspended": ("doctor", DOCTOR, "suspended", "insufficient_scope", "suspended"),
}


@pytest.mark.oidc(clock_skew=0)
@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refused(
    gateway: tuple[Config, ServerThread], openid_provider: OpenIDProvider, case: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config, server = gateway
    source, address, reason, status, message = REFUSALS[case]
    if source == "expired":
        token = openid_provider.token(DOCTOR_ID, SHORT)  # valid for one second
        time.sleep(2.1)
    elif source == "other":
        token = openid_provider.token(DOCTOR_ID, OTHER)
    elif source in ("doctor", "pharmacist", "stranger"):
        rpps = {"doctor": demo.DOCTOR_RPPS, "pharmacist": demo.PHARMACIST_RPPS,
                "stranger": STRANGER_RPPS}[source]
        token = openid_provider.token(national_id(rpps))
    else:
        token = _forged(openid_provider, source)
    if case == "suspended":
        open_directory(config, actor="test").suspend(DOCTOR)
    with caplog.at_level(logging.INFO, "mssgw.oidc"):
        smtp_sasl = Sasl("OAUTHBEARER", address, token)
        code, text = _smtp_login(config, server, smtp_sasl)
        imap_sasl = Sasl("XOAUTH2", address, token)
        typ, imap_text = _imap_login(config, server, imap_sasl)
    assert code == 535 and message in text, text
    assert typ == "NO" and "AUTHENTICATIONFAILED" in imap_text and message in imap_text
    # RFC 7628: the error challenge tells the client what to do and where to go.
    assert smtp_sasl.errors == [{
        "status": status, "scope": "openid",
        "openid-configuration": f"{openid_provider.issuer}/.well-known/openid-configuration",
    }]
    assert imap_sasl.errors == [{"status": "401" if status == "invalid_token" else "403",
                                 "schemes": "bearer", "scope": "openid"}]
    refusals = [r.getMessage() for r in caplog.records if "token login refused" in r.getMessage()]
    assert len(refusals) == 2 and all(f"reason={reason}" in r for r in refusals), refusals
    assert token not in caplog.text and token[-20:] not in caplog.text


def test_no_token_before_tls(
    gateway: tuple[Config, ServerThread], openid_provider: OpenIDProvider
) -> None:
    config, server = gateway
    token = openid_provider.token(DOCTOR_ID)
    client = smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=30)
    try:
        client.ehlo("client.test")
        assert "auth" not in client.esmtp_features
        ir = base64.b64encode(oauthbearer(DOCTOR, token).encode()).decode()
        code, text = client.docmd("AUTH", f"OAUTHBEARER {ir}")
        assert code == 530 and b"STARTTLS" in text
    finally:
        client.close()
    plain = imaplib.IMAP4("127.0.0.1", server.ports["imap starttls"], timeout=30)
    try:
        assert "AUTH=OAUTHBEARER" not in plain.capabilities
        assert "LOGINDISABLED" in plain.capabilities
        with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED"):
            plain.authenticate("OAUTHBEARER", Sasl("OAUTHBEARER", DOCTOR, token))
    finally:
        plain.shutdown()


@pytest.mark.oidc(auth='\n[auth]\naccount_max_failures = 3\n')
def test_failed_tokens_lock_the_account_out(
    gateway: tuple[Config, ServerThread], openid_provider: OpenIDProvider
) -> None:
    config, server = gateway
    bad = _forged(openid_provider, "tampered")
    for _ in range(3):
        assert _smtp_login(config, server, Sasl("OAUTHBEARER", DOCTOR, bad))[0] == 535
    good = openid_provider.token(DOCTOR_ID)
    code, text = _smtp_login(config, server, Sasl("OAUTHBEARER", DOCTOR, good))
    assert code == 454 and "too many failed logins" in text
    typ, text = _imap_login(config, server, Sasl("OAUTHBEARER", DOCTOR, good))
    assert typ == "NO" and "UNAVAILABLE" in text
    with smtp(config, server) as client, pytest.raises(smtplib.SMTPException):
        client.login(DOCTOR, PASSWORD)  # the same lockout as passwords
    # Another mailbox is not locked.
    assert _smtp_login(config, server, Sasl("OAUTHBEARER", PHARMACIST,
                                            openid_provider.token(PHARMACIST_ID)))[0] == 235


@pytest.mark.oidc(jwks_refetch_interval=0)
def test_key_rotation_followed_without_restart(
    gateway: tuple[Config, ServerThread], openid_provider: OpenIDProvider
) -> None:
    config, server = gateway
    before = openid_provider.keys
    assert _smtp_login(config, server, Sasl("OAUTHBEARER", DOCTOR,
                                            openid_provider.token(DOCTOR_ID)))[0] == 235
    try:
        openid_provider.rotate([new_signing_key("rotated-in-service"), *before])
        token = openid_provider.token(DOCTOR_ID)
        assert json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["kid"] \
            == "rotated-in-service"
        assert _smtp_login(config, server, Sasl("OAUTHBEARER", DOCTOR, token))[0] == 235
        assert _imap_login(config, server, Sasl("XOAUTH2", DOCTOR, token))[0] == "OK"
    finally:
        openid_provider.rotate(before)


@pytest.mark.oidc(auth='\n[auth]\npassword_kinds = ["APP", "PATIENT"]\n')
def test_professionals_switched_to_token_only(
    gateway: tuple[Config, ServerThread], openid_provider: OpenIDProvider
) -> None:
    config, server = gateway
    with smtp(config, server) as client, pytest.raises(
        smtplib.SMTPAuthenticationError, match="does not log in with a"
    ):
        client.login(DOCTOR, PASSWORD)
    client = imap(config, server)
    with pytest.raises(imaplib.IMAP4.error, match="does not log in with a password"):
        client.login(PHARMACY, PASSWORD)
    client.logout()
    token = openid_provider.token(DOCTOR_ID)
    assert _smtp_login(config, server, Sasl("OAUTHBEARER", DOCTOR, token))[0] == 235


def test_not_offered_without_an_issuer(gateway_home: Path) -> None:
    config = setup_gateway(gateway_home)
    with ServerThread(config, imap=True) as server:
        with smtp(config, server) as client:
            assert "OAUTHBEARER" not in client.esmtp_features["auth"]
            assert "XOAUTH2" not in client.esmtp_features["auth"]
            code, _ = client.docmd("AUTH", "OAUTHBEARER " + base64.b64encode(
                oauthbearer(DOCTOR, "x.y.z").encode()).decode())
            assert code == 504
        client = imap(config, server)
        try:
            assert "AUTH=OAUTHBEARER" not in client.capabilities
            with pytest.raises(imaplib.IMAP4.error, match="CANNOT"):
                client.authenticate("XOAUTH2", Sasl("XOAUTH2", DOCTOR, "x.y.z"))
        finally:
            client.logout()


def test_a_malformed_message_is_a_syntax_error(
    gateway: tuple[Config, ServerThread], openid_provider: OpenIDProvider
) -> None:
    config, server = gateway
    with smtp(config, server) as client:
        code, text = client.docmd("AUTH", "OAUTHBEARER " + base64.b64encode(
            b"n,,auth=Bearer x").decode())
        assert code == 501 and b"OAUTHBEARER" in text
        assert client.noop()[0] == 250  # the session goes on
        # An AUTH line may carry 12,288 octets (RFC 4954), not more.
        code, _ = client.docmd("AUTH", "OAUTHBEARER " + "A" * 13000)
        assert code == 500
    client = imap(config, server)
    try:
        bad = base64.b64encode(b"n,,\x01auth=Basic x\x01\x01").decode()
        with pytest.raises(imaplib.IMAP4.error, match="malformed OAUTHBEARER"):
            client._simple_command("AUTHENTICATE", "OAUTHBEARER", bad)
        assert client.noop()[0] == "OK"
    finally:
        client.logout()


def test_operator_commands(
    gateway: tuple[Config, ServerThread], openid_provider: OpenIDProvider,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`mssgw oidc check` reads the provider's documents; `mssgw oidc token` says whether a
    token (on stdin) opens a mailbox, and why not, without counting a failure."""
    import io

    from gateway.cli import main

    config, _ = gateway
    cfg = str(config.source)
    assert main(["oidc", "check", "--config", cfg]) == 0
    out = capsys.readouterr().out
    assert f"issuer: {openid_provider.issuer}" in out and "key-1" in out
    token = openid_provider.token(DOCTOR_ID)
    monkeypatch.setattr("sys.stdin", io.StringIO(token + "\n"))
    assert main(["oidc", "token", "--config", cfg]) == 0
    assert f"opens {DOCTOR}" in capsys.readouterr().out
    for _ in range(6):  # never locks anything out
        monkeypatch.setattr("sys.stdin", io.StringIO(token))
        assert main(["oidc", "token", "--mailbox", PHARMACY, "--config", cfg]) == 1
        assert "wrong-professional" in capsys.readouterr().err
    server = gateway[1]
    assert _smtp_login(config, server, Sasl("OAUTHBEARER", PHARMACY,
                                            openid_provider.token(PHARMACIST_ID)))[0] == 235
    assert main(["oidc", "check", "--config", str(setup_off(config))]) == 1
    assert "token logins are off" in capsys.readouterr().err


def setup_off(config: Config) -> Path:
    path = Path(str(config.source)).with_name("off.toml")
    path.write_text('[gateway]\ndomain = "test.localhost"\n')
    return path


def test_provider_unreachable_is_a_temporary_failure(
    gateway_home: Path, openid_provider: OpenIDProvider, caplog: pytest.LogCaptureFixture
) -> None:
    """No answer from the provider: try again later (SMTP 454, IMAP NO [UNAVAILABLE]), and no
    failed login is counted against the professional."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))  # a port nobody answers on (bound, not listening)
    port = listener.getsockname()[1]
    extra = (f'\n[oidc]\nissuer = "https://127.0.0.1:{port}"\naudience = "{AUDIENCE}"\n'
             "\n[auth]\naccount_max_failures = 2\n")
    config = setup_gateway(gateway_home, extra=extra)
    token = openid_provider.token(DOCTOR_ID)
    try:
        with ServerThread(config, imap=True) as server, \
                caplog.at_level(logging.INFO, "mssgw.oidc"):
            for _ in range(3):
                code, text = _smtp_login(config, server, Sasl("OAUTHBEARER", DOCTOR, token))
                assert code == 454 and "identity provider cannot be reached" in text
            typ, text = _imap_login(config, server, Sasl("XOAUTH2", DOCTOR, token))
            assert typ == "NO" and "UNAVAILABLE" in text
            with smtp(config, server) as client:  # not locked out: passwords still work
                assert client.login(DOCTOR, PASSWORD)[0] == 235
    finally:
        listener.close()
    assert "OpenID provider unavailable" in caplog.text and token not in caplog.text
