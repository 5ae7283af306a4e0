"""deploy/: the systemd units pass `systemd-analyze verify` and its security review, the
configurations load, the container file is consistent with the project (it is not built here:
no Docker or Podman engine runs in this sandbox or in CI), and `mssgw serve` speaks systemd's
notify protocol: READY=1, a watchdog fed only while /readyz says ready, STOPPING=1."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import ROOT, require_tool
from smtp_helpers import setup_gateway
from test_smtp_crash import start_serve

from gateway.config import load_config
from gateway.pki.ca import revoke, server_credentials

DEPLOY = ROOT / "deploy"
UNITS = sorted(p.name for p in DEPLOY.iterdir() if p.suffix in (".service", ".timer"))


def units_for_this_machine(tmp_path: Path) -> Path:
    """The units with ExecStart pointing at this checkout's venv (verify checks that each
    command exists and is executable)."""
    venv = Path(sys.executable).parent
    out = tmp_path / "units"
    out.mkdir()
    for name in UNITS:
        text = (DEPLOY / name).read_text()
        text = text.replace("/opt/mssgw/.venv/bin/", f"{venv}/")
        (out / name).write_text(text)
    return out


def test_units_pass_systemd_analyze_verify(tmp_path):
    tool = require_tool("systemd-analyze")
    assert {"mssgw.service", "mssgw-whitelist.service", "mssgw-whitelist.timer",
            "mssgw-backup.service", "mssgw-backup.timer"} <= set(UNITS)
    units = units_for_this_machine(tmp_path)
    r = subprocess.run([tool, "verify", *(str(units / n) for n in UNITS)],
                       capture_output=True, text=True, timeout=120)
    # verify exits 0 even for a key it ignores ("Unknown key", "Failed to parse"): any line
    # about our files is a defect.
    ours = [line for line in (r.stdout + r.stderr).splitlines()
            if any(n in line for n in UNITS)]
    assert r.returncode == 0 and not ours, r.stdout + r.stderr


def test_the_gateway_unit_is_hardened(tmp_path):
    tool = require_tool("systemd-analyze")
    unit = (DEPLOY / "mssgw.service").read_text()
    settings = dict(re.findall(r"^(\w+)=(.*)$", unit, re.M))
    assert settings["Type"] == "notify" and settings["WatchdogSec"]
    assert settings["User"] == "mssgw" and settings["NoNewPrivileges"] == "yes"
    assert settings["ProtectSystem"] == "strict"
    # The only capability: binding 25, 465, 587, 143, 993.
    assert settings["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"
    assert settings["AmbientCapabilities"] == "CAP_NET_BIND_SERVICE"
    units = units_for_this_machine(tmp_path)
    r = subprocess.run([tool, "security", "--offline=true", str(units / "mssgw.service")],
                       capture_output=True, text=True, timeout=120)
    m = re.search(r"Overall exposure level for mssgw\.service: ([\d.]+)", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 2.5, r.stdout  # systemd's scale: 0 (safe) to 10 (exposed)


def test_deploy_configurations_load_and_use_the_real_ports():
    for name in ("config.toml", "container.toml"):
        config = load_config(DEPLOY / name)  # unknown keys would be refused
        assert config.smtp.relay.endswith(":25") and config.imap.tls.endswith(":993")
        assert config.storage.database.startswith("/var/lib/mssgw/")
        assert config.metrics_path == Path("/run/mssgw/metrics")
    assert load_config(DEPLOY / "config.toml").log.mail == "/var/log/mssgw/mail.log"


def test_container_file_matches_the_project():
    """Checked, not built (no container engine here): what it copies exists, it installs the
    lock with hashes, runs as a user, and its health check is a real command."""
    from gateway.cli import build_parser

    text = (DEPLOY / "Containerfile").read_text()
    for line in re.findall(r"^COPY (.+)$", text, re.M):
        *sources, _ = line.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the project"
    assert "--require-hashes" in text and "requirements.lock" in text
    assert re.search(r"^USER mssgw$", text, re.M)
    health = re.search(r'HEALTHCHECK [^\n]*\\\n\s*CMD \["[^"]+/mssgw", ([^\]]+)\]', text)
    assert health
    args = json.loads(f"[{health.group(1)}]")
    parsed = build_parser().parse_args(args)
    assert parsed.command == "health"
    for port in ("25", "465", "587", "143", "993"):
        assert re.search(rf"^EXPOSE .*\b{port}\b", text, re.M)


def test_logrotate_needs_no_signal():
    text = (DEPLOY / "logrotate" / "mssgw").read_text()
    assert "/var/log/mssgw/mail.log {" in text and "create 0640 mssgw mssgw" in text
    # Every worker reopens the file when it was moved (WatchedFileHandler): no reload script,
    # no copytruncate (which loses the lines written while it copies).
    assert not re.search(r"^\s*(postrotate|copytruncate)", text, re.M)


class Notifications:
    """A fake systemd: the datagram socket NOTIFY_SOCKET names, collecting what arrives."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.path = path
        self.received: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.received += data.decode().split("\n")

    def wait_for(self, predicate, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(list(self.received)):
                return
            time.sleep(0.1)
        raise AssertionError(f"not received; got {self.received}")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def test_serve_notifies_systemd_and_feeds_the_watchdog_while_ready(gateway_home, tmp_path):
    cfg = gateway_home / "config.toml"
    config = setup_gateway(gateway_home)
    notes = Notifications(tmp_path / "notify")
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "2000000"}
    proc, ports = start_serve(cfg, env)
    health = [sys.executable, "-m", "gateway", "health", "--config", str(cfg),
              "--address", f"127.0.0.1:{ports['https']}"]  # [http] listen has port 0
    try:
        notes.wait_for(lambda got: "READY=1" in got)
        notes.wait_for(lambda got: got.count("WATCHDOG=1") >= 2)
        # `mssgw health` sees the same: ready.
        r = subprocess.run(health, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and r.stdout.strip().endswith("ready"), r.stdout + r.stderr
        # The server certificate revoked: not ready; the watchdog is no longer fed.
        revoke(config, server_credentials(config).serial, "key-compromise")
        notes.wait_for(lambda got: any(x.startswith("STATUS=not ready: certificate") for x in got))
        count = notes.received.count("WATCHDOG=1")
        time.sleep(3)
        assert notes.received.count("WATCHDOG=1") <= count + 1  # at most one probe in flight
        r = subprocess.run([*health, "--json"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 1
        body = json.loads(r.stdout)
        assert body["ready"] is False and "revoked" in body["checks"]["certificate"]["detail"]
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(30) == 0
        notes.wait_for(lambda got: "STOPPING=1" in got, timeout=5)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        notes.close()


@pytest.mark.parametrize("value", ["", "x", "5000000"])
def test_watchdog_interval_only_when_asked_for_us(monkeypatch, value):
    from gateway import systemd

    monkeypatch.setenv("WATCHDOG_USEC", value)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    expected = 2.5 if value == "5000000" else None
    assert systemd.watchdog_interval() == expected
    monkeypatch.setenv("WATCHDOG_PID", "1")  # another process's watchdog
    assert systemd.watchdog_interval() is None
