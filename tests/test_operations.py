"""What an operator sees of a running `mssgw serve` (two worker processes): the metrics added up
across the workers, and the mail log's line per SMTP transaction, delivery, relay attempt,
bounce and login, in a file that logrotate may move away."""

from __future__ import annotations

import imaplib
import os
import re
import signal
import smtplib
import socket
import time

import pytest
from http_helpers import client
from smtp_helpers import DOCTOR, PASSWORD, PHARMACIST, message, setup_gateway, submission
from test_smtp_crash import listening, start_serve

from gateway.config import load_config
from gateway.maillog import render
from gateway.pki.tls import client_context

SECRET = "diagnostic-confidentiel-7731"  # in a subject and a body: never in the log


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text exposition (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{.*\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = ",".join(sorted((m.group(2) or "{}")[1:-1].split(","))) if m.group(2) else ""
        if got == wanted:
            return float(m.group(3))
    return 0.0


def parse_kv(line: str) -> dict[str, str]:
    body = line.split(": ", 1)[1]
    return {k: v.strip('"') for k, v in re.findall(r'(\w[\w.-]*)=("(?:[^"\\]|\\.)*"|\S+)', body)}


def wait_for(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


@pytest.fixture
def served(gateway_home):
    cfg = gateway_home / "config.toml"
    cfg.write_text(cfg.read_text().replace("workers = 1", "workers = 2"))
    setup_gateway(gateway_home, routes='{ "peer.localhost" = "127.0.0.1:9" }',
                  queue_retry_initial="60", queue_lifetime="86400")
    cfg.write_text(cfg.read_text() + '\n[log]\nmail = "var/log/mail.log"\n'
                   "\n[auth]\naccount_max_failures = 2\n")
    config = load_config(cfg)
    from gateway.directory import open_directory

    directory = open_directory(config, actor="test")
    directory.add_domain("peer.localhost", ["CN=mx.peer.localhost,O=Peer Operator,C=FR"])
    directory.close()
    proc, ports = start_serve(cfg)
    try:
        # "ready" is said when the first worker listens: both do before the test counts on them.
        wait_for(lambda: listening(ports["https"]) == 2, timeout=60)
        yield config, ports
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)


def test_metrics_and_mail_log_of_a_running_gateway(served):
    config, ports = served
    log_path = config.path("var/log/mail.log")

    # 6 submission connections, 5 messages accepted, 1 recipient refused.
    connections = 0
    for _ in range(5):
        with submission(config, ports["smtp submission"]) as c:
            connections += 1
            c.send_message(message(DOCTOR, PHARMACIST, subject=SECRET, body=SECRET + "\n"))
    with submission(config, ports["smtp submission"]) as c:
        connections += 1
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            c.send_message(message(DOCTOR, "nobody@test.localhost"))
    # One relayed recipient: its peer (127.0.0.1:9) is down, the attempt is deferred.
    with submission(config, ports["smtp submission"]) as c:
        connections += 1
        c.send_message(message(DOCTOR, "dr.house@peer.localhost"))
    # A TLS handshake that fails: plain text on the implicit-TLS port.
    with socket.create_connection(("127.0.0.1", ports["smtp submission-tls"]), timeout=10) as s:
        s.sendall(b"EHLO not-tls.example\r\n")
        s.recv(100)  # the server's alert, or the connection closing
    # IMAP: two failed logins, then a third refused by the lockout (account_max_failures=2),
    # then a session that logs in and stays open.
    ctx = client_context(config, present_certificate=False)
    for _ in range(3):
        c = imaplib.IMAP4_SSL("127.0.0.1", ports["imap tls"], ssl_context=ctx, timeout=10)
        with pytest.raises(imaplib.IMAP4.error):
            c.login(PHARMACIST, "wrong password!!")
        c.logout()
    session = imaplib.IMAP4_SSL("127.0.0.1", ports["imap tls"], ssl_context=ctx, timeout=10)
    session.login(DOCTOR, PASSWORD)

    def log_lines() -> list[dict[str, str]]:
        if not log_path.exists():
            return []
        return [parse_kv(line) for line in log_path.read_text().splitlines()]

    wait_for(lambda: any(e.get("event") == "relay" for e in log_lines()))

    with client(config, ports["https"]) as http:
        pids = {http.get("/healthz").json()["pid"] for _ in range(1)}
        text = http.get("/metrics").text
    for _ in range(16):  # new connections: scrapes answered by both workers agree
        with client(config, ports["https"]) as http:
            r = http.get("/healthz")
            pids.add(r.json()["pid"])
            again = http.get("/metrics").text
        assert sample(again, "mssgw_messages_accepted_total", listener="submission") == 6
    assert len(pids) == 2

    assert sample(text, "mssgw_connections_total", listener="smtp submission") == connections
    assert sample(text, "mssgw_messages_accepted_total", listener="submission") == 6
    assert sample(text, "mssgw_messages_refused_total", listener="submission",
                  reason="recipient") == 1
    assert sample(text, "mssgw_deliveries_total", kind="local") == 5
    assert sample(text, "mssgw_relay_attempts_total", result="deferred") == 1
    assert sample(text, "mssgw_pipeline_seconds_count", listener="submission") == 6
    assert sample(text, "mssgw_tls_handshake_failures_total", listener="smtp submission") == 1
    assert sample(text, "mssgw_logins_total", protocol="imap", result="failed") == 3
    assert sample(text, "mssgw_logins_total", protocol="imap", result="ok") == 1
    assert sample(text, "mssgw_logins_total", protocol="smtp", result="ok") == connections
    assert sample(text, "mssgw_lockouts_total", protocol="imap") == 1
    assert sample(text, "mssgw_imap_sessions_open") == 1
    assert sample(text, "mssgw_queue_messages") == 1
    assert sample(text, "mssgw_queue_oldest_age_seconds") > 0
    [server] = re.findall(r'^mssgw_certificate_expiry_days\{role="server",subject="([^"]+)"\}'
                          r" (\S+)$", text, re.M)
    assert "CN=mx.test.localhost" in server[0] and 1000 < float(server[1]) < 1100
    session.logout()

    events = log_lines()
    accepted = [e for e in events if e["event"] == "smtp" and e["result"] == "accepted"]
    assert len(accepted) == 6
    first = accepted[0]
    assert first["listener"] == "submission" and first["from"] == f"<{DOCTOR}>"
    assert first["to"] == f"<{PHARMACIST}>" and first["auth"] == DOCTOR
    assert re.fullmatch(r"[0-9A-F]{21}", first["qid"]) and int(first["size"]) > 0
    delivered = [e for e in events if e["event"] == "delivery"]
    assert {e["qid"] for e in delivered} == {e["qid"] for e in accepted[:5]}
    refused = [e for e in events if e["event"] == "smtp" and e["result"] == "refused"]
    assert [(e["stage"], e["to"], e["status"]) for e in refused] == [
        ("rcpt", "<nobody@test.localhost>", "550 5.1.1")]
    [relay] = [e for e in events if e["event"] == "relay"]
    assert relay["result"] == "deferred" and relay["to"] == "<dr.house@peer.localhost>"
    assert relay["relay"] == "127.0.0.1:9" and relay["qid"] == accepted[5]["qid"]
    logins = [(e["protocol"], e["result"]) for e in events if e["event"] == "login"]
    assert logins.count(("imap", "failed")) == 2 and ("imap", "locked") in logins
    assert ("imap", "ok") in logins
    assert SECRET not in log_path.read_text()

    # logrotate moves the file away: the next line goes to a new file, none is lost.
    os.rename(log_path, log_path.with_name("mail.log.1"))
    with submission(config, ports["smtp submission"]) as c:
        c.send_message(message(DOCTOR, PHARMACIST))
    new = wait_for(lambda: [e for e in log_lines() if e["event"] == "smtp"])
    assert new[0]["result"] == "accepted"


def test_render_is_one_line_whatever_the_values():
    line = render({"event": "smtp", "reason": 'bad "value"\r\nevent=forged', "size": 3})
    assert "\n" not in line and "\r" not in line
    assert line == r'event=smtp reason="bad \"value\"\r\nevent=forged" size=3'
    assert render({"event": "login", "user": None}) == "event=login"
    as_json = render({"event": "bounce", "to": "<a@b>"}, "json")
    assert as_json.startswith("{") and '"event":"bounce"' in as_json and "\n" not in as_json
