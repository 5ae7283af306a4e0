"""The running `mssgw serve` for the API and console tests: its HTTPS listener's base URL."""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from admin_helpers import Admins, setup_admins


def _start(home: Path) -> tuple[subprocess.Popen[bytes], str]:
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


def client(admins: Admins, base: str, token: str | None = None, *,
           certificate: tuple[Path, Path] | None = None, http2: bool = False) -> httpx.Client:
    """An HTTP client of the listener, trusting the gateway's CA (real TLS), presenting
    `certificate` (certificate file, key file) when given."""
    context = ssl.create_default_context(cafile=str(admins.config.certs_path / "ca" / "chain.pem"))
    if certificate is not None:
        context.load_cert_chain(str(certificate[0]), str(certificate[1]))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=base, verify=context, headers=headers, timeout=30, http2=http2)
