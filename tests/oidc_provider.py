"""A real OpenID provider for the tests: node-oidc-provider (tests/oidc/provider.mjs) run with the
machine's Node.js, over HTTPS with a test CA, on a loopback port.

`make test` installs it into tests/oidc/node_modules (`npm ci` from the committed lock file);
nothing is downloaded at test time. When Node.js or that install is missing the tests that need
the provider skip with the reason (and fail under CI=true).

Tokens are obtained as a professional's software would from Pro Santé Connect with its
decoupled flow, CIBA (poll mode): a backchannel authentication request naming the professional
(login_hint = national identifier) and the resource (RFC 8707), then the token request with the
auth_req_id. The provider's "authentication device" approves at once.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from joserfc.jwk import ECKey, RSAKey

PROVIDER_DIR = Path(__file__).resolve().parent / "oidc"
MIN_NODE = (20, 19)

# The resources (RFC 8707 indicators) the provider issues tokens for.
AUDIENCE = "mssgw-test"  # what the gateway's [oidc] audience is set to
GATEWAY = "https://mx.test.localhost/"  # JWT access tokens for the gateway, 10 minutes
SHORT = "https://short.test.localhost/"  # the same audience, but tokens live 1 second
OTHER = "https://other.test.localhost/"  # another service's audience
OPAQUE = "https://opaque.test.localhost/"  # opaque tokens for the gateway (introspection)
ES256 = "https://es256.test.localhost/"  # JWTs for the gateway signed with an EC key

SOFTWARE_CLIENT = "practice-software"
SOFTWARE_SECRET = "practice-software-secret-0123456789"  # noqa: S105 - test client
GATEWAY_CLIENT = "mssgw"  # the gateway's own client, for introspection
GATEWAY_SECRET = "mssgw-introspection-secret-0123456789"  # noqa: S105 - test client


def national_id(rpps: str) -> str:
    """Pro Santé Connect's identifier of a professional: 8 + RPPS."""
    return "8" + rpps


# Professionals the provider knows. The first two are the demo doctor and pharmacist (their
# mailboxes are in the test directory); the third has a valid RPPS but no mailbox here.
STRANGER_RPPS = "10100000008"


def demo_accounts() -> dict[str, dict[str, str]]:
    from gateway.directory import demo

    accounts = {}
    for rpps, family, given in (
        (demo.DOCTOR_RPPS, demo.DOCTOR_FAMILY_NAME, demo.DOCTOR_GIVEN_NAME),
        (demo.PHARMACIST_RPPS, demo.PHARMACIST_FAMILY_NAME, demo.PHARMACIST_GIVEN_NAME),
        (STRANGER_RPPS, "INCONNU", "Paul"),
    ):
        nid = national_id(rpps)
        accounts[nid] = {"preferred_username": nid, "SubjectNameID": nid,
                         "family_name": family, "given_name": given}
    return accounts


def node_problem() -> str | None:
    """Why the provider cannot run here, or None."""
    node = shutil.which("node")
    if node is None:
        return "Node.js is not installed (Debian package nodejs; `make test` installs it)"
    out = subprocess.run([node, "--version"], capture_output=True, text=True, check=False)
    try:
        version = tuple(int(p) for p in out.stdout.strip().lstrip("v").split(".")[:2])
    except ValueError:
        return f"cannot read the Node.js version ({out.stdout.strip()!r})"
    if version < MIN_NODE:
        return f"Node.js {out.stdout.strip()} is older than oidc-provider 9 needs (20.19)"
    if not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        return "oidc-provider is not installed in tests/oidc (`make test` runs npm ci there)"
    return None


def new_signing_key(kid: str, alg: str = "RS256") -> dict[str, Any]:
    """A private JWK for the provider's key set."""
    params = {"kid": kid, "use": "sig", "alg": alg}
    key: RSAKey | ECKey
    if alg.startswith("ES"):
        key = ECKey.generate_key("P-256", parameters=params, private=True)
    else:
        key = RSAKey.generate_key(2048, parameters=params, private=True)
    return dict(key.as_dict(private=True))


def _test_ca(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate for 127.0.0.1 signed by it: (ca.pem, cert.pem, key.pem)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mssgw test OpenID CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                       critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    os.chmod(paths[2], 0o600)
    return paths


@dataclass
class OpenIDProvider:
    """A running provider; `token(...)` gets an access token, `rotate(...)` changes its keys."""

    folder: Path
    accounts: dict[str, dict[str, str]]
    keys: list[dict[str, Any]] = field(default_factory=list)
    issuer: str = ""
    ca_file: Path = Path()
    _proc: subprocess.Popen[str] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> OpenIDProvider:
        self.ca_file, cert, key = _test_ca(self.folder)
        if not self.keys:
            self.keys = [new_signing_key("key-1")]
        settings = {
            "cert": str(cert),
            "key": str(key),
            "jwks": {"keys": self.keys},
            "accounts": self.accounts,
            "clients": [
                {
                    "client_id": SOFTWARE_CLIENT,
                    "client_secret": SOFTWARE_SECRET,
                    "grant_types": ["urn:openid:params:grant-type:ciba"],
                    "response_types": [],
                    "redirect_uris": [],
                    "backchannel_token_delivery_mode": "poll",
                    "token_endpoint_auth_method": "client_secret_basic",
                },
                {
                    "client_id": GATEWAY_CLIENT,
                    "client_secret": GATEWAY_SECRET,
                    "grant_types": [],
                    "response_types": [],
                    "redirect_uris": [],
                    "token_endpoint_auth_method": "client_secret_basic",
                },
            ],
            "resources": {
                GATEWAY: {"audience": AUDIENCE, "ttl": 600},
                SHORT: {"audience": AUDIENCE, "ttl": 1},
                OTHER: {"audience": "another-service", "ttl": 600},
                OPAQUE: {"audience": AUDIENCE, "ttl": 600, "format": "opaque"},
                ES256: {"audience": AUDIENCE, "ttl": 600, "alg": "ES256"},
            },
        }
        path = self.folder / "provider.json"
        path.write_text(json.dumps(settings))
        self._proc = subprocess.Popen(
            ["node", str(PROVIDER_DIR / "provider.mjs"), str(path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd=PROVIDER_DIR,
        )
        first = self._read()
        self.issuer = first["issuer"]
        return self

    def _read(self) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdout is not None
        while True:
            line = self._proc.stdout.readline()
            if not line:
                err = self._proc.stderr.read() if self._proc.stderr else ""
                raise RuntimeError(f"the OpenID provider stopped: {err[-2000:]}")
            if line.startswith("{"):  # oidc-provider's own notices go to stdout too
                return dict(json.loads(line))

    def _command(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdin is not None
        with self._lock:
            self._proc.stdin.write(json.dumps(command) + "\n")
            self._proc.stdin.flush()
            answer = self._read()
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    def rotate(self, keys: list[dict[str, Any]]) -> None:
        """Publish `keys` and sign with the first one from now on."""
        self.keys = keys
        self._command({"cmd": "keys", "jwks": {"keys": keys}})

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        assert proc.stdin is not None
        proc.stdin.close()  # the provider exits when its stdin closes
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()

    # --- what a professional's software does ------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def discovery(self) -> dict[str, Any]:
        with httpx.Client(verify=self.ssl_context(), timeout=10) as http:
            r = http.get(f"{self.issuer}/.well-known/openid-configuration")
            r.raise_for_status()
            return dict(r.json())

    def token(self, account: str, resource: str = GATEWAY) -> str:
        """An access token for `account` (its national identifier) from CIBA."""
        meta = self.discovery()
        auth = (SOFTWARE_CLIENT, SOFTWARE_SECRET)
        with httpx.Client(verify=self.ssl_context(), timeout=10, auth=auth) as http:
            r = http.post(meta["backchannel_authentication_endpoint"], data={
                "scope": "openid mail", "login_hint": account, "resource": resource,
            })
            if r.status_code != 200:
                raise RuntimeError(f"backchannel authentication: {r.status_code} {r.text}")
            req_id = r.json()["auth_req_id"]
            r = http.post(meta["token_endpoint"], data={
                "grant_type": "urn:openid:params:grant-type:ciba", "auth_req_id": req_id,
            })
            if r.status_code != 200:
                raise RuntimeError(f"token request: {r.status_code} {r.text}")
            return str(r.json()["access_token"])
