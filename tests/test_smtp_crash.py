"""Durability: `mssgw serve` (two worker processes) is killed with SIGKILL in the middle of
concurrent submissions; every message that got a 250 must be in a mailbox or in the queue."""

from __future__ import annotations

import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from email.policy import SMTP
from pathlib import Path

from smtp_helpers import DOCTOR, PHARMACIST, PHARMACY, client_context, message, setup_gateway

from gateway.directory import open_directory
from gateway.store.queue import Queue

QID = re.compile(rb"queued as ([0-9A-F]{21})")
RECEIVED_ID = re.compile(rb"with ESMTPSA id ([0-9A-F]{21})")


def start_serve(
    cfg: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], dict[str, int]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", str(cfg)],
        stderr=subprocess.PIPE, start_new_session=True, env=env,
    )
    ports: dict[str, int] = {}
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        m = re.search(rb"listening: (.+?) on 127\.0\.0\.1:(\d+)", line)
        if m:
            ports[m.group(1).decode()] = int(m.group(2))
        if b"worker process(es) ready" in line:
            # Keep draining stderr so the server never blocks on a full pipe.
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, ports
    proc.kill()
    raise AssertionError(f"serve did not start: {proc.stderr.read()!r}")


def stored_ids(config) -> set[bytes]:
    ids: set[bytes] = set()
    for path in config.mailboxes_path.glob("*/*/new/*"):
        m = RECEIVED_ID.search(path.read_bytes()[:400])
        if m:
            ids.add(m.group(1))
    return ids | {q.encode() for q in Queue(config.queue_path).ids()}


def test_sigkill_during_load_loses_nothing_acknowledged(gateway_home):
    cfg = gateway_home / "config.toml"
    cfg.write_text(cfg.read_text().replace("workers = 1", "workers = 2"))
    config = setup_gateway(
        gateway_home, queue_lifetime="86400", queue_retry_initial="60",
        rate_limit_client="0", rate_limit_account="0",
        routes='{ "peer.localhost" = "127.0.0.1:9" }',
    )
    open_directory(config, actor="test").add_domain(
        "peer.localhost", ["CN=mx.peer.localhost,O=Peer Operator,C=FR"]
    )
    proc, ports = start_serve(cfg)
    acked: list[bytes] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load(n: int) -> None:
        rcpts = [[PHARMACIST], [PHARMACY, PHARMACIST], ["dr.house@peer.localhost"]][n % 3]
        data = message(DOCTOR, ", ".join(rcpts), body="x" * 2000).as_bytes(policy=SMTP)
        while not stop.is_set():
            try:
                with smtplib.SMTP("127.0.0.1", ports["smtp submission"], timeout=10) as c:
                    c.starttls(context=client_context(config))
                    c.login(DOCTOR, "correct horse battery staple")
                    while not stop.is_set():
                        c.mail(DOCTOR)
                        for r in rcpts:
                            c.rcpt(r)
                        code, reply = c.data(data)
                        m = QID.search(reply)
                        if code == 250 and m:
                            with lock:
                                acked.append(m.group(1))
            except (OSError, smtplib.SMTPException):
                time.sleep(0.01)

    threads = [threading.Thread(target=load, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while len(acked) < 150 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # supervisor and workers, mid-flight
    proc.wait(10)
    stop.set()
    for t in threads:
        t.join(20)
    assert len(acked) >= 150, "the load did not get going"
    missing = set(acked) - stored_ids(config)
    assert not missing, f"{len(missing)} acknowledged message(s) lost of {len(acked)}"

    # What a killed writer leaves in tmp/ (a sub-folder's too) is cleaned at the restart.
    inbox = config.mailboxes_path / "test.localhost" / "ph.durand"
    for folder in (inbox, inbox / ".Sent"):
        (folder / "tmp").mkdir(parents=True, exist_ok=True)
        (folder / "tmp" / "1700000000.M1P1Q1.host,S=3").write_bytes(b"cut")
    # After a restart the gateway serves again, and everything is still there.
    proc, ports = start_serve(cfg)
    assert list(config.mailboxes_path.glob("*/*/tmp/*")) == []
    assert list(config.mailboxes_path.glob("*/*/.*/tmp/*")) == []
    try:
        with smtplib.SMTP("127.0.0.1", ports["smtp submission"], timeout=10) as c:
            c.starttls(context=client_context(config))
            c.login(DOCTOR, "correct horse battery staple")
            c.send_message(message(DOCTOR, PHARMACIST))
        assert set(acked) <= stored_ids(config)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def listening(port: int) -> int:
    """How many sockets listen on 127.0.0.1:`port` (one per worker, SO_REUSEPORT)."""
    local = f"0100007F:{port:04X}"
    return sum(1 for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
               if line.split()[1] == local and line.split()[3] == "0A")


def test_dead_worker_is_restarted_and_busy_port_is_one_line(gateway_home):
    cfg = gateway_home / "config.toml"
    cfg.write_text(cfg.read_text().replace("workers = 1", "workers = 2"))
    config = setup_gateway(gateway_home)
    proc, ports = start_serve(cfg)
    try:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert len(children) == 2
        os.kill(int(children[0]), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            if len(now) == 2 and children[0] not in now:
                break
            time.sleep(0.1)
        assert children[0] not in now and len(now) == 2, "the worker was not restarted"
        # Once the new worker listens too (the kernel spreads connections over both sockets),
        # whichever worker takes the connections, the gateway serves.
        while time.monotonic() < deadline and listening(ports["smtp submission"]) < 2:
            time.sleep(0.1)
        assert listening(ports["smtp submission"]) == 2, "the new worker does not listen"
        for _ in range(4):
            with smtplib.SMTP("127.0.0.1", ports["smtp submission"], timeout=10) as c:
                c.starttls(context=client_context(config))
                c.login(DOCTOR, "correct horse battery staple")
                c.send_message(message(DOCTOR, PHARMACIST))
        # A port held by another program: one line, exit 1. (Another mssgw of the same user
        # would share the port through SO_REUSEPORT instead.)
        other = socket.create_server(("127.0.0.1", 0))
        busy = gateway_home / "busy.toml"
        busy.write_text(
            cfg.read_text().replace('submission = "127.0.0.1:0"',
                                    f'submission = "127.0.0.1:{other.getsockname()[1]}"')
        )
        with other:
            r = subprocess.run(
                [sys.executable, "-m", "gateway", "serve", "--config", str(busy)],
                capture_output=True, text=True, timeout=60, start_new_session=True,
            )
        assert r.returncode == 1, r.stderr
        assert r.stderr.strip().splitlines()[-1].startswith("mssgw: error: cannot listen:"), \
            r.stderr
        assert "Traceback" not in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
