"""A token login's cost next to a password login's (gateway.oidc vs gateway.directory.auth).

Starts the test suite's OpenID provider (node-oidc-provider from tests/oidc, `make test`
installs it) over HTTPS on 127.0.0.1, a demo gateway in a temporary folder, and prints:
- in process, per login: password with scrypt (cache miss), password from the credential cache,
  token (JWT signature + claims + directory mapping + lockout checks, keys already cached);
- over the wire, whole SMTP submission sessions (connect, STARTTLS, EHLO, AUTH, QUIT) per
  second, one client after the other: AUTH PLAIN (cached password) vs AUTH OAUTHBEARER.
Bounded: each loop runs about BENCH_SECONDS (default 2) seconds. Skips (exit 0) without Node.js.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import logging
import os
import smtplib
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from oidc_provider import AUDIENCE, OpenIDProvider, demo_accounts, national_id, node_problem  # noqa: E402
from smtp_helpers import ServerThread, client_context  # noqa: E402

from gateway.cli import main  # noqa: E402
from gateway.config import load_config  # noqa: E402
from gateway.directory import demo, open_directory  # noqa: E402
from gateway.directory.auth import Authenticator  # noqa: E402
from gateway.oidc import BearerResponse, Mechanism, token_logins  # noqa: E402

SECONDS = float(os.environ.get("BENCH_SECONDS", "2"))
PASSWORD = "bench password 123"


async def arate(label: str, fn: Callable[[], Awaitable[object]]) -> float:
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < SECONDS:
        await fn()
        n += 1
    ms = elapsed / n * 1000
    print(f"{label}: {n / elapsed:,.0f}/s ({ms:.3f} ms each, n={n})")
    return ms


def rate(label: str, fn: Callable[[], object]) -> float:
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < SECONDS:
        fn()
        n += 1
    ms = elapsed / n * 1000
    print(f"{label}: {n / elapsed:,.0f}/s ({ms:.3f} ms each, n={n})")
    return ms


def main_bench() -> int:
    problem = node_problem()
    if problem:
        print(f"skipped: {problem}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        idp = OpenIDProvider(Path(tmp), demo_accounts()).start()
        try:
            return run(Path(tmp), idp)
        finally:
            idp.stop()


def run(tmp: Path, idp: OpenIDProvider) -> int:
    cfg = tmp / "config.toml"
    cfg.write_text(
        '[gateway]\ndomain = "bench.localhost"\nhostname = "mx.bench.localhost"\n'
        '[smtp]\nsubmission = "127.0.0.1:0"\nsubmission_tls = ""\nrelay = ""\n'
        "rate_limit_client = 0\nrate_limit_account = 0\n"
        '[imap]\nstarttls = ""\ntls = ""\n'
        "[auth]\naccount_max_failures = 0\nclient_max_failures = 0\n"
        f'[oidc]\nissuer = "{idp.issuer}"\naudience = "{AUDIENCE}"\n'
        f'ca_file = "{idp.ca_file}"\n'
    )
    with contextlib.redirect_stdout(io.StringIO()):
        main(["init", "--demo", "--config", str(cfg)])
    config = load_config(cfg)
    doctor = demo.doctor_address("bench.localhost")
    directory = open_directory(config)
    directory.set_password(doctor, PASSWORD)
    token = idp.token(national_id(demo.DOCTOR_RPPS))
    bearer = BearerResponse(Mechanism.OAUTHBEARER, token, doctor)

    async def in_process() -> tuple[float, float]:
        auth = Authenticator.from_config(config, directory)
        logins = token_logins(config, directory, auth)
        assert logins is not None
        assert (await logins.login(bearer, "192.0.2.1", "bench")).ok  # reads the keys once
        scrypt = type(auth.settings)(cache_ttl=0, account_max_failures=0, client_max_failures=0)
        cold = Authenticator(auth.directory, auth.failures, scrypt)
        await arate("password login, scrypt (no cache)",
                    lambda: cold.authenticate(doctor, PASSWORD, "192.0.2.1"))
        cached = await arate("password login, credential cache hit",
                             lambda: auth.authenticate(doctor, PASSWORD, "192.0.2.1"))
        await arate("token validation alone (RS256 signature, claims)",
                    lambda: logins.validator.validate(token))
        tok = await arate("token login (validation, directory mapping, lockout checks)",
                          lambda: logins.login(bearer, "192.0.2.1", "bench"))
        return cached, tok

    logging.getLogger("mssgw").setLevel(logging.WARNING)  # one info line per login otherwise
    cached, tok = asyncio.run(in_process())

    message = f"n,a={doctor},\x01auth=Bearer {token}\x01\x01"
    with ServerThread(config) as server:
        port = server.ports["submission"]
        ctx = client_context(config)
        # Each session makes a full TLS handshake: the same share in both figures.

        def session(auth: Callable[[smtplib.SMTP], object]) -> None:
            client = smtplib.SMTP("127.0.0.1", port, timeout=30)
            client.ehlo("bench")
            client.starttls(context=ctx)
            client.ehlo("bench")
            auth(client)
            client.quit()

        def plain(client: smtplib.SMTP) -> None:
            client.login(doctor, PASSWORD)

        def oauthbearer(client: smtplib.SMTP) -> None:
            code, _ = client.docmd("AUTH", "OAUTHBEARER " + base64.b64encode(
                message.encode()).decode())
            assert code == 235, code

        session(plain)  # warm the credential cache
        p = rate("SMTP session with AUTH PLAIN (cached password), STARTTLS", lambda: session(plain))
        t = rate("SMTP session with AUTH OAUTHBEARER, STARTTLS", lambda: session(oauthbearer))
    print(f"token login vs cached password login: {tok - cached:+.3f} ms in process, "
          f"{t - p:+.3f} ms per SMTP session")
    return 0


if __name__ == "__main__":
    raise SystemExit(main_bench())
