"""Certificates from the health PKI: a separate hierarchy (tests/external_pki.py) plays
IGC-Santé. The gateway imports a server certificate it issued and serves with it; its CAs are
trust anchors for what they were imported for; their CRLs come from the distribution points
the certificates name, and an unreachable or bad one keeps the last valid CRL."""

from __future__ import annotations

import datetime as dt
import os
import signal
import ssl
import time

import httpx
import pytest
from cryptography import x509
from external_pki import CRLServer, HealthPKI, key_pem, pem
from test_smtp_crash import start_serve

from gateway.cli import main
from gateway.config import load_config
from gateway.pki import store
from gateway.pki.ca import PKIError, server_credentials
from gateway.pki.external import import_server, refresh_crls
from gateway.pki.verify import Failure, verify_certificate


@pytest.fixture
def igc():
    server = CRLServer()
    try:
        yield HealthPKI(server)
    finally:
        server.close()


@pytest.fixture
def home(gateway_home):
    return gateway_home


def cli(home, *args: str) -> int:
    return main([*args, "--config", str(home / "config.toml")])


def test_import_server_certificate_and_serve_with_it(home, igc, tmp_path, capsys):
    config = load_config(home / "config.toml")
    cert, key = igc.server_certificate("mx.test.localhost")
    files = {name: igc.write(tmp_path, name, data) for name, data in {
        "bundle.pem": pem(igc.root, igc.ca), "server.pem": pem(cert), "server.key": key_pem(key),
        "chain.pem": pem(igc.ca)}.items()}

    # Before its CAs are anchors, the certificate is refused: peers would refuse it too.
    assert cli(home, "pki", "import-server", "--cert", str(files["server.pem"]), "--key",
               str(files["server.key"]), "--chain", str(files["chain.pem"])) == 1
    assert "add-anchor" in capsys.readouterr().err
    assert cli(home, "pki", "add-anchor", str(files["bundle.pem"]), "--for", "relay") == 0
    before = server_credentials(config).serial
    assert cli(home, "pki", "import-server", "--cert", str(files["server.pem"]), "--key",
               str(files["server.key"]), "--chain", str(files["chain.pem"])) == 0
    out = capsys.readouterr().out
    assert "CN=mx.test.localhost,O=Operateur de test,C=FR" in out
    creds = server_credentials(config)
    assert creds.serial != before
    assert oct(creds.key_path.stat().st_mode & 0o777) == "0o600"
    # `mssgw init` keeps it (its own CA would otherwise re-issue one naming localhost too).
    assert cli(home, "init") == 0
    assert server_credentials(config).serial == creds.serial

    proc, ports = start_serve(home / "config.toml")
    try:
        trust_igc = ssl.create_default_context(cadata=pem(igc.root).decode())
        with httpx.Client(verify=trust_igc, timeout=30) as c:
            # The name on the certificate; the connection goes to 127.0.0.1.
            r = c.get(f"https://127.0.0.1:{ports['https']}/readyz",
                      extensions={"sni_hostname": "mx.test.localhost"})
            tls = r.extensions["network_stream"].get_extra_info("ssl_object")
            presented = x509.load_der_x509_certificate(tls.getpeercert(True))
            assert presented == cert
            assert r.status_code == 200, r.text
        # Worker 0 fetched the issuing CA's CRL from the distribution point at start.
        deadline = time.monotonic() + 30
        while "/organisations.crl" not in igc.server.requests and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "/organisations.crl" in igc.server.requests
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(30) == 0


def test_import_server_refuses_what_peers_would_refuse(home, igc, tmp_path):
    config = load_config(home / "config.toml")
    from gateway.pki.anchors import add_anchor

    add_anchor(config, pem(igc.root, igc.ca))
    cert, key = igc.server_certificate("mx.test.localhost")
    other_cert, other_key = igc.server_certificate("mx.elsewhere.example")
    with pytest.raises(PKIError, match="does not belong"):
        import_server(config, pem(cert), key_pem(other_key), pem(igc.ca))
    with pytest.raises(PKIError, match="does not name"):
        import_server(config, pem(other_cert), key_pem(other_key), pem(igc.ca))
    before = server_credentials(config).serial
    no_client, key2 = igc.server_certificate("mx.test.localhost", client_auth=False)
    done = import_server(config, pem(no_client), key_pem(key2), pem(igc.ca))
    assert any("clientAuth" in w for w in done.warnings)
    assert server_credentials(config).serial != before
    with store.connection(config) as conn:
        assert store.get_state(conn, "server_source") == "external"


def test_crls_from_distribution_points_keep_the_last_valid_one(home, igc, capsys):
    config = load_config(home / "config.toml")
    from gateway.pki.anchors import add_anchor

    # The issuing CA's distribution point is named only by the certificates it issues: given
    # at import (IGC-Santé publishes them), as the server certificate's chain would name it.
    add_anchor(config, pem(igc.root, igc.ca), crl_urls=[igc.server.url("/organisations.crl")])
    peer, _ = igc.server_certificate("mx.peer.localhost")
    ok = verify_certificate(config, peer, [igc.ca], "server")
    assert ok.ok and "no CRL imported" in ok.reason

    # The operator revokes the peer's certificate and publishes; we fetch.
    igc.revoked.append(peer.serial_number)
    igc.publish()
    assert cli(home, "pki", "refresh-crls") == 0
    out = capsys.readouterr().out
    assert "updated: CN=IGC-SANTE TEST ORGANISATIONS" in out and "1 revoked" in out
    result = verify_certificate(config, peer, [igc.ca], "server")
    assert result.failure is Failure.REVOKED
    assert all(r.detail == "unchanged" for r in refresh_crls(config))

    # Unreachable, an error page, garbage, a CRL signed by someone else: the last CRL stays.
    igc.server.status = 503
    results = refresh_crls(config)
    assert results and not any(r.ok for r in results)
    assert all("kept the last CRL: HTTP 503" in r.detail for r in results)
    igc.server.status = None
    igc.server.files["/organisations.crl"] = b"<html>maintenance</html>"
    [bad] = [r for r in refresh_crls(config) if r.url.endswith("/organisations.crl")]
    assert not bad.ok and "not a CRL" in bad.detail
    elsewhere = CRLServer()
    forger = HealthPKI(elsewhere)  # same names, other keys
    elsewhere.close()
    igc.server.files["/organisations.crl"] = forger.crl(
        [], at=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1))
    [forged] = [r for r in refresh_crls(config) if r.url.endswith("/organisations.crl")]
    assert not forged.ok and "signature" in forged.detail
    igc.server.close()
    [gone] = [r for r in refresh_crls(config) if r.url.endswith("/organisations.crl")]
    assert not gone.ok and "unreachable" in gone.detail
    assert cli(home, "pki", "refresh-crls") == 1
    assert verify_certificate(config, peer, [igc.ca], "server").failure is Failure.REVOKED


def test_anchors_vouch_only_for_what_they_were_imported_for(home, igc):
    config = load_config(home / "config.toml")
    from gateway.pki.anchors import add_anchor, list_anchors

    add_anchor(config, pem(igc.ca), ["sign"], ["http://127.0.0.1:9/extra.crl"])
    peer, _ = igc.server_certificate("mx.peer.localhost")
    result = verify_certificate(config, peer, [], "server")
    assert not result.ok and result.failure is Failure.UNTRUSTED
    [anchor] = list_anchors(config)
    assert anchor.uses == ("sign",) and anchor.crl_urls == ("http://127.0.0.1:9/extra.crl",)
    from gateway.pki.external import crl_sources

    assert "http://127.0.0.1:9/extra.crl" in crl_sources(config)
    with pytest.raises(PKIError):
        add_anchor(config, pem(igc.root), ["everything"])
