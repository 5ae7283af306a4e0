"""The running `mssgw serve` for the API and console tests: its HTTPS listener's base URL."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from admin_helpers import Admins, setup_admins


def _start_dev(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Until the HTTPS listener of `mssgw serve` exists: the same app under uvicorn."""
    import socket

    from gateway.config import load_config
    from gateway.pki.ca import server_credentials

    config = load_config(home / "config.toml")
    creds = server_credentials(config)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = home / "dev_app.py"
    app.write_text(
        "import types\nfrom fastapi import FastAPI\nfrom gateway.config import load_config\n"
        "from gateway.web import register\n"
        f"config = load_config({str(home / 'config.toml')!r})\n"
        "app = FastAPI()\napp.state.mssgw = types.SimpleNamespace(config=config)\n"
        "register(app, app.state.mssgw)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--app-dir", str(home), "dev_app:app",
         "--host", "127.0.0.1", "--port", str(port), "--ssl-certfile", str(creds.cert_path),
         "--ssl-keyfile", str(creds.key_path), "--log-level", "warning"],
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"https://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("dev server did not start")


def _start(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    if importlib.util.find_spec("gateway.http") is None:
        return _start_dev(home)
    from test_smtp_crash import start_serve

    proc, ports = start_serve(home / "config.toml")
    return proc, f"https://127.0.0.1:{ports['https']}"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


@pytest.fixture(scope="module")
def admin_gateway(
    tmp_path_factory: pytest.TempPathFactory, _gateway_template: Path
) -> Iterator[tuple[Admins, str]]:
    """One running `mssgw serve` per test module, with the demo population and administrators
    (setup_admins): (admins, "https://127.0.0.1:PORT")."""
    home = tmp_path_factory.mktemp("admin") / "gw"
    shutil.copytree(_gateway_template, home, symlinks=True)
    with (home / "config.toml").open("a") as f:  # mail for elsewhere: a port nobody answers
        f.write('\n[smtp]\nroutes = { "elsewhere.localhost" = "127.0.0.1:9" }\n'
                "queue_retry_initial = 3600\n")
    admins = setup_admins(home)
    proc, base = _start(home)
    try:
        yield admins, base
    finally:
        _stop(proc)


def client(admins: Admins, base: str, token: str | None = None) -> httpx.Client:
    """An HTTP client of the listener, trusting the gateway's CA (real TLS)."""
    context = ssl.create_default_context(cafile=str(admins.config.certs_path / "ca" / "chain.pem"))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=base, verify=context, headers=headers, timeout=30)
