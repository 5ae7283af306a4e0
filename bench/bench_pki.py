"""PKI figures: init, issuing, verification, and TLS handshakes on loopback with our contexts.

Bounded: each loop runs for about one second. Prints one line per figure.
"""

from __future__ import annotations

import contextlib
import io
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography import x509  # noqa: E402

from gateway import pki  # noqa: E402
from gateway.cli import main  # noqa: E402
from gateway.config import load_config  # noqa: E402
from gateway.pki.tls import client_context, server_context  # noqa: E402


def rate(label: str, fn: Callable[[], object], seconds: float = 1.0) -> None:
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn()
        n += 1
    print(f"{label}: {n / elapsed:,.0f}/s ({elapsed / n * 1000:.2f} ms each, n={n})")


def handshakes(config, profile: str, seconds: float = 1.0) -> None:
    server = server_context(config)
    client = client_context(config, present_certificate=False)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            try:
                with server.wrap_socket(raw, server_side=True) as conn:
                    conn.sendall(b"x")
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    def one() -> None:
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            client.wrap_socket(raw, server_hostname="localhost") as conn,
        ):
            conn.recv(1)

    rate(f"TLS handshakes, profile {profile}, one client thread", one, seconds)
    stop.set()
    listener.close()
    thread.join(2)


def run() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        (home / "config.toml").write_text('[gateway]\nhostname = "localhost"\n')
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            main(["init", "--config", str(home / "config.toml")])
        print(f"mssgw init (3 CAs RSA-3072, server cert): {time.perf_counter() - start:.2f} s")
        config = load_config(home / "config.toml")
        start = time.perf_counter()
        issued = [pki.issue(config, "org-client", f"app{i}@x.localhost", "App") for i in range(5)]
        print(f"issue (RSA-2048 key + index): {(time.perf_counter() - start) / 5 * 1000:.0f} ms")
        cert = x509.load_pem_x509_certificates(issued[0].cert_path.read_bytes())[0]
        rate(
            "verify_certificate (chain, purpose, CRL)",
            lambda: pki.verify_certificate(config, cert, purpose="client"),
        )
        handshakes(config, "default")
        cfg = home / "config.toml"
        cfg.write_text(cfg.read_text() + '[tls]\nprofile = "strict"\n')
        handshakes(load_config(cfg), "strict")


if __name__ == "__main__":
    run()
