"""The CRL distribution point: our CRLs over plain HTTP, for peers and any verifier.

Every certificate the CA issues names `<[pki] crl_base_url>/<ca>.crl` (see `crl_url`), and this
listener (`[pki] crl_listen`, started by `mssgw serve`) answers it. Plain HTTP on purpose: a
CRL is signed, so it needs no transport security, and RFC 5280 practice is HTTP (or LDAP)
because fetching a CRL over TLS would need a certificate check that itself needs the CRL.
RFC 5280 4.2.1.13 wants DER over HTTP: the PEM files the CA publishes are served as DER,
`application/pkix-crl`.

Deliberately tiny and separate from the admin HTTP stack (which may mount `crl_response` later):
it only answers `GET`/`HEAD` of the CRL files (404 for any other path, 405 for any other
method), reads at most one request of at most 8 kB per connection within 10 seconds (a slow or
silent client is cut off), holds at most 256 connections at once, and closes after each answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.config import Config, parse_hostport
from gateway.pki.files import Layout
from gateway.pki.kinds import CA

if TYPE_CHECKING:
    from gateway.runtime import Runtime

log = logging.getLogger("mssgw.pki")

MAX_REQUEST = 8192  # request line and headers together
READ_TIMEOUT = 10.0  # seconds to send the whole request
MAX_CONNECTIONS = 256
CACHE_SECONDS = 3600  # how long a cache (a peer's verifier, a proxy) may keep a CRL


def crl_url(config: Config, ca: CA) -> str | None:
    """Where the CRL of `ca` is published, or None when no base URL is configured."""
    base = config.pki.crl_base_url.rstrip("/")
    return f"{base}/{ca.value}.crl" if base else None


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()

    def encode(self, *, head: bool = False) -> bytes:
        lines = [
            f"HTTP/1.1 {self.status} {self.reason}",
            f"Date: {formatdate(usegmt=True)}",
            f"Content-Type: {self.content_type}",
            f"Content-Length: {len(self.body)}",
            "Connection: close",
            *(f"{k}: {v}" for k, v in self.headers),
        ]
        head_bytes = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
        return head_bytes if head else head_bytes + self.body


_FILES = {f"{ca.value}.crl": ca for ca in CA}
_der_cache: dict[Path, tuple[float, bytes]] = {}


def _der(path: Path) -> bytes:
    mtime = path.stat().st_mtime
    hit = _der_cache.get(path)
    if hit is None or hit[0] != mtime:
        crl = x509.load_pem_x509_crl(path.read_bytes())
        hit = _der_cache[path] = (mtime, crl.public_bytes(serialization.Encoding.DER))
    return hit[1]


def crl_response(config: Config, method: str, target: str) -> Response:
    """The answer to `method target` (sans-IO: the listener below, or an ASGI route, sends it)."""
    if method not in ("GET", "HEAD"):
        return Response(405, "Method Not Allowed", b"only GET and HEAD\n",
                        headers=(("Allow", "GET, HEAD"),))
    base_path = _base_path(config)
    path = target.split("?", 1)[0]
    name = path[len(base_path):].lstrip("/") if path.startswith(base_path) else ""
    ca = _FILES.get(name)
    if ca is None:
        return Response(404, "Not Found", b"no such CRL\n")
    try:
        body = _der(Layout.of(config).ca_crl(ca))
    except FileNotFoundError:
        return Response(404, "Not Found", b"this CRL is not published yet\n")
    except (OSError, ValueError) as exc:
        log.error("CRL %s cannot be served: %s", name, exc)
        return Response(503, "Service Unavailable", b"the CRL cannot be read\n")
    return Response(200, "OK", body, "application/pkix-crl",
                    (("Cache-Control", f"max-age={CACHE_SECONDS}"),))


def _base_path(config: Config) -> str:
    """The path part of crl_base_url ("/crl" in "http://host:port/crl"), "" for none."""
    url = config.pki.crl_base_url
    rest = url.split("://", 1)[1] if "://" in url else url
    slash = rest.find("/")
    return rest[slash:].rstrip("/") if slash >= 0 else ""


async def _serve(config: Config, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, slots: asyncio.Semaphore) -> None:
    if slots.locked():  # too many at once: no waiting room for a flood
        writer.close()
        return
    async with slots:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
        except (asyncio.LimitOverrunError, asyncio.IncompleteReadError, TimeoutError,
                ConnectionError, ValueError):
            # too long, cut short, too slow: nothing worth an answer (a 400 to a scanner that
            # is still sending would only be read by nobody)
            writer.close()
            return
        started = time.monotonic()
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            response = Response(400, "Bad Request", b"not an HTTP/1.x request\n")
            method = ""
        else:
            method = parts[0]
            response = crl_response(config, method, parts[1])
        try:
            writer.write(response.encode(head=method == "HEAD"))
            await asyncio.wait_for(writer.drain(), READ_TIMEOUT)
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
        peer = writer.get_extra_info("peername")
        log.debug("crl http %s %r %d (%.1f ms)", peer[0] if peer else "?", line[:100],
                  response.status, (time.monotonic() - started) * 1000)


async def start(runtime: Runtime, *, reuse_port: bool = False) -> list[asyncio.Server]:
    """The CRL listener on [pki] crl_listen (none when it is empty)."""
    config = runtime.config
    if not config.pki.crl_listen:
        return []
    host, port = parse_hostport(config.pki.crl_listen)
    slots = asyncio.Semaphore(MAX_CONNECTIONS)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _serve(config, reader, writer, slots)

    server = await asyncio.start_server(handle, host, port, reuse_port=reuse_port,
                                        limit=MAX_REQUEST)
    setattr(server, "mssgw_name", "crl http")  # noqa: B010 - read by gateway.server
    return [server]
