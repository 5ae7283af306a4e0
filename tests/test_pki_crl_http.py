"""The CRL distribution point (issue 12, section 5): every certificate names an HTTP CRL URL,
`mssgw serve` answers it over plain HTTP, and a peer fetching it sees a revocation (checked
with `openssl crl` and `openssl verify -crl_check -crl_download`, as a peer's verifier does)."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import urllib.error
import urllib.request

import pytest
from cryptography import x509
from smtp_helpers import DOCTOR, setup_gateway
from test_smtp_crash import start_serve

from gateway import audit
from gateway.cli import main
from gateway.config import load_config
from gateway.pki import ca
from gateway.pki.crlhttp import crl_response
from gateway.pki.files import Layout
from gateway.pki.kinds import CA

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl binary")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_crl_listener(home) -> tuple[object, str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}/crl"
    cfg = home / "config.toml"
    cfg.write_text(cfg.read_text()
                   + f'\n[pki]\ncrl_listen = "127.0.0.1:{port}"\ncrl_base_url = "{base}"\n')
    return setup_gateway(home), base


def run(home, *args: str) -> int:
    return main([*args, "--config", str(home / "config.toml")])


def cdp_of(path) -> list[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    return [str(n.value) for p in points for n in (p.full_name or [])]


def openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)


def test_peer_fetches_our_crl_over_http_and_sees_the_revocation(gateway_home, tmp_path, capsys):
    config, base = with_crl_listener(gateway_home)
    issued = [ca.issue(config, "personal-sign", DOCTOR, "Dr Martin") for _ in range(2)]
    revoked, kept = issued
    url = f"{base}/persons.crl"
    assert cdp_of(revoked.cert_path) == [url]
    assert run(gateway_home, "pki", "revoke", revoked.serial, "--reason", "key-compromise") == 0
    proc, ports = start_serve(gateway_home / "config.toml")
    try:
        assert "crl http" in ports
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.headers["Content-Type"] == "application/pkix-crl"
            der = r.read()
        (tmp_path / "persons.crl").write_bytes(der)
        text = openssl("crl", "-inform", "DER", "-in", str(tmp_path / "persons.crl"),
                       "-noout", "-text")
        assert text.returncode == 0, text.stderr
        assert "mssgw Persons CA" in text.stdout
        assert revoked.serial.upper().lstrip("0") in text.stdout.replace(":", "").upper()
        assert "Key Compromise" in text.stdout
        layout = Layout.of(config)
        chain = tmp_path / "chain.pem"
        chain.write_bytes(layout.ca_cert(CA.ROOT).read_bytes()
                          + layout.ca_cert(CA.PERSONS).read_bytes())
        # openssl downloads the CRL from the certificate's distribution point itself
        bad = openssl("verify", "-crl_check", "-crl_download", "-CAfile", str(chain),
                      str(revoked.cert_path))
        assert bad.returncode != 0 and "certificate revoked" in bad.stdout + bad.stderr, bad
        good = openssl("verify", "-crl_check", "-crl_download", "-CAfile", str(chain),
                       str(kept.cert_path))
        assert good.returncode == 0 and ": OK" in good.stdout, good.stdout + good.stderr
        # the same with the fetched file handed over
        crl_pem = tmp_path / "persons.crl.pem"
        assert openssl("crl", "-inform", "DER", "-in", str(tmp_path / "persons.crl"),
                       "-out", str(crl_pem)).returncode == 0
        again = openssl("verify", "-crl_check", "-CAfile", str(chain), "-CRLfile", str(crl_pem),
                        str(revoked.cert_path))
        assert again.returncode != 0 and "certificate revoked" in again.stdout + again.stderr
        # only the CRLs are there
        for path, status in (("/crl/persons.crl", 200), ("/crl/nope.crl", 404),
                             ("/crl/../gateway.db", 404), ("/", 404), ("/crl/", 404)):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{ports['crl http']}{path}",
                                            timeout=10) as r:
                    got = r.status
            except urllib.error.HTTPError as exc:
                got = exc.code
            assert got == status, path
        post = urllib.request.Request(url, data=b"x", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(post, timeout=10)
        assert refused.value.code == 405
        # a silent client does not hold the listener: others are served meanwhile
        with socket.create_connection(("127.0.0.1", ports["crl http"])) as idle, \
                socket.create_connection(("127.0.0.1", ports["crl http"])) as huge:
            idle.sendall(b"GET /crl/persons.crl HTTP/1.1\r\n")  # and never the end
            huge.sendall(b"GET /crl/persons.crl HTTP/1.1\r\nX: " + b"a" * 20000)
            with urllib.request.urlopen(url, timeout=10) as r:
                assert r.read() == der
            huge.settimeout(10)
            assert huge.recv(100) in (b"", )  # an oversized request is closed, unanswered
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_crl_response_is_sans_io(gateway_home):
    config, base = with_crl_listener(gateway_home)
    ok = crl_response(config, "GET", "/crl/root.crl")
    assert ok.status == 200 and ok.content_type == "application/pkix-crl"
    x509.load_der_x509_crl(ok.body)
    assert crl_response(config, "HEAD", "/crl/root.crl").encode(head=True).endswith(b"\r\n\r\n")
    assert crl_response(config, "GET", "/crl/root.crl.pem").status == 404
    assert crl_response(config, "DELETE", "/crl/root.crl").status == 405


def test_crl_base_url_must_be_plain_http(gateway_home):
    cfg = gateway_home / "config.toml"
    cfg.write_text(cfg.read_text() + '\n[pki]\ncrl_base_url = "https://crl.example.fr/crl"\n')
    with pytest.raises(Exception, match="crl_base_url must be an http:// URL"):
        load_config(cfg)


def test_init_demo_never_reissues_nor_issues_for_others(gateway_home, capsys):
    from gateway.directory import open_directory
    from gateway.directory.demo import doctor_address
    from gateway.directory.model import Professional

    assert run(gateway_home, "init", "--demo") == 0
    config = load_config(gateway_home / "config.toml")
    doctor = doctor_address(config.gateway.domain)
    [cert] = ca.list_certificates(config, email=doctor, kind="personal-sign")
    # an administrator adds a doctor by hand: init --demo is not for them
    directory = open_directory(config, actor="admin")
    directory.add_professional("dr.who@test.localhost", Professional(
        rpps="10100999993", adeli=None, family_name="SMITH", given_name="John", profession="10"))
    directory.close()
    capsys.readouterr()
    assert run(gateway_home, "pki", "revoke", cert.serial, "--reason", "key-compromise") == 0
    capsys.readouterr()
    assert run(gateway_home, "init", "--demo") == 0  # what `make run` does at every start
    out = capsys.readouterr().out
    assert "issued personal-sign" not in out
    assert [c.serial for c in ca.list_certificates(config, email=doctor,
                                                    kind="personal-sign")] == [cert.serial]
    assert ca.list_certificates(config, email="dr.who@test.localhost") == []
    assert ca.get_certificate(config, cert.serial).revoked_at is not None
    # issues and revocations are in the audit log, with who did them
    actions = [(e.action, e.actor) for e in audit.read(config) if e.action.startswith("pki.")]
    assert ("pki.revoke", audit.local_actor()) in actions
    assert ("pki.issue", audit.local_actor()) in actions
