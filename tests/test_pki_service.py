"""The running gateway keeps its CRLs fresh (a `mssgw serve` singleton)."""

from __future__ import annotations

import asyncio

from cryptography import x509
from pki_helpers import config_of

from gateway.pki import service
from gateway.pki.files import Layout
from gateway.pki.kinds import CA
from gateway.runtime import Runtime
from gateway.server import SINGLETONS


def crl_number(path) -> int:
    crl = x509.load_pem_x509_crl(path.read_bytes())
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def test_serve_runs_the_refresh():
    assert service.start in SINGLETONS


async def test_due_crls_are_republished_while_running(gateway_home):
    cfg = gateway_home / "config.toml"
    # 7 days left of a 30-day lifetime: past half, so due.
    cfg.write_text(cfg.read_text() + "[pki]\ncrl_days = 30\n")
    config = config_of(gateway_home)
    path = Layout.of(config).ca_crl(CA.PERSONS)
    before = crl_number(path)
    task = await service.start(Runtime(config), every=3600)
    try:
        for _ in range(100):
            if crl_number(path) > before:
                break
            await asyncio.sleep(0.05)
        assert crl_number(path) == before + 1
        assert not task.done()  # it keeps running for the next round
    finally:
        task.cancel()
