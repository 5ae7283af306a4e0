"""Helpers shared by the PKI tests: configs, certificate files, a one-shot TLS server."""

from __future__ import annotations

import socket
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from gateway.config import Config, load_config


def config_of(home: Path) -> Config:
    return load_config(home / "config.toml")


def leaf(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificates(path.read_bytes())[0]


@dataclass
class ServerSide:
    error: BaseException | None = None
    version: str | None = None
    cipher: str | None = None
    peer_der: bytes | None = None
    result: object = None
    done: threading.Event = field(default_factory=threading.Event)


def handshake(
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
    *,
    server_hostname: str | None = "mx.test.localhost",
    on_server=None,
) -> tuple[ServerSide, BaseException | None, ssl.SSLSocket | None]:
    """A real TLS handshake over 127.0.0.1: returns (server outcome, client error, client
    socket). The server sends b"ok" after its handshake so TLS 1.3 client-certificate failures
    (reported after the client's handshake) show up on the client's first read too."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    side = ServerSide()

    def serve() -> None:
        conn = None
        try:
            raw, _ = listener.accept()
            raw.settimeout(10)
            conn = server_ctx.wrap_socket(raw, server_side=True)
            side.version = conn.version()
            side.cipher = conn.cipher()[0] if conn.cipher() else None
            side.peer_der = conn.getpeercert(binary_form=True)
            if on_server:
                side.result = on_server(conn)
            conn.sendall(b"ok")
        except BaseException as exc:
            side.error = exc
        finally:
            if conn:
                conn.close()
            listener.close()
            side.done.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client_error: BaseException | None = None
    sock = None
    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock = client_ctx.wrap_socket(raw, server_hostname=server_hostname)
        if sock.recv(2) != b"ok":
            raise ConnectionError("server closed the connection")
    except (ssl.SSLError, OSError) as exc:
        client_error = exc
    thread.join(10)
    if sock:
        sock.close()
    assert side.done.is_set(), "server thread did not finish"
    return side, client_error, sock
