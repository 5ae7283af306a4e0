"""Helpers for the HTTPS listener's tests: the listener inside the test's event loop, and an
httpx client over real TLS that trusts the gateway's root CA (as Prometheus or a browser given
the CA would)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx

from gateway.config import Config
from gateway.http.app import Extension, WebContext
from gateway.pki.files import Layout
from gateway.pki.kinds import CA


def trust_gateway(config: Config) -> ssl.SSLContext:
    """Trust the gateway's root CA only; the server certificate names 127.0.0.1."""
    return ssl.create_default_context(cafile=str(Layout.of(config).ca_cert(CA.ROOT)))


def client(config: Config, port: int, **kwargs: object) -> httpx.Client:
    return httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=trust_gateway(config),
                        timeout=30, **kwargs)  # type: ignore[arg-type]


@dataclass
class RunningHTTP:
    port: int
    client: httpx.AsyncClient
    context: WebContext  # the process's objects, as the handlers see them


@asynccontextmanager
async def running_http(
    config: Config, extensions: Sequence[Extension] | None = None
) -> AsyncIterator[RunningHTTP]:
    """The HTTPS listener of `config` (on its [http] listen, port 0 in tests) in this event
    loop, and an async client for it; stopped (gracefully) on exit."""
    from gateway.http import service
    from gateway.runtime import Runtime

    runtime = Runtime(config)
    [listener] = await service.start(
        runtime, extensions=list(extensions) if extensions is not None else None)
    port = listener.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{port}",
                                     verify=trust_gateway(config), timeout=30) as c:
            yield RunningHTTP(port, c, listener.app.state.mssgw)
    finally:
        listener.close()
        await listener.task
        runtime.close()
