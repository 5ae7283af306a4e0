"""The HTTPS listener: the gateway's TLS, /healthz, /readyz, /metrics, and the extension point
other capabilities use to add their routers."""

from __future__ import annotations

import ssl
import time

import httpx
import pytest
from cryptography import x509
from fastapi import APIRouter, FastAPI
from http_helpers import running_http, trust_gateway

from gateway.config import load_config
from gateway.http.app import Context, WebContext
from gateway.pki.ca import revoke, server_credentials
from gateway.runtime import Runtime
from gateway.store.queue import Entry, Queue


@pytest.fixture
def config(gateway_home):
    return load_config(gateway_home / "config.toml")


async def test_health_over_the_gateways_tls(config):
    async with running_http(config) as http:
        r = await http.client.get("/healthz")
        assert r.status_code == 200
        assert r.json()["status"] == "alive"
        assert "server" not in r.headers  # no product banner
        # The certificate presented is the gateway's own server certificate.
        tls = r.extensions["network_stream"].get_extra_info("ssl_object")
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        presented = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
        ours = x509.load_pem_x509_certificates(server_credentials(config).cert_path.read_bytes())
        assert presented == ours[0]


async def test_tls_profile_applies(gateway_home):
    cfg = gateway_home / "config.toml"
    cfg.write_text(cfg.read_text() + '\n[tls]\nprofile = "strict"\n')
    config = load_config(cfg)
    async with running_http(config) as http:
        only13 = trust_gateway(config)
        only13.minimum_version = ssl.TLSVersion.TLSv1_3
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient(verify=only13) as c:
                await c.get(f"https://127.0.0.1:{http.port}/healthz")
        r = await http.client.get("/healthz")
        assert r.status_code == 200
        assert r.extensions["network_stream"].get_extra_info("ssl_object").version() == "TLSv1.2"
        # A client that does not trust the gateway's CA is refused by its own TLS stack.
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient() as c:
                await c.get(f"https://127.0.0.1:{http.port}/healthz")


async def test_http2_is_negotiated(config):
    async with running_http(config) as http, httpx.AsyncClient(
        verify=trust_gateway(config), http2=True
    ) as c:
        r = await c.get(f"https://127.0.0.1:{http.port}/healthz")
        assert r.status_code == 200 and r.http_version == "HTTP/2"


async def test_readyz_says_what_is_wrong(config):
    async with running_http(config) as http:
        http.context.readiness.cache_seconds = 0
        r = await http.client.get("/readyz")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["ready"] is True
        assert set(body["checks"]) == {"storage", "queue", "certificate"}

        # A delivery due long ago that nobody attempts: the queue is not moving.
        queue = Queue(config.queue_path).ensure()
        queue.enqueue_many([Entry("0000000000001DEADBEEF", "dr.martin@test.localhost",
                                  ["x@peer.localhost"], b"Subject: x\r\n\r\nx\r\n")])
        record = queue.load("0000000000001DEADBEEF")
        record.recipients[0].next_attempt = time.time() - 3600
        queue.save(record)
        r = await http.client.get("/readyz")
        assert r.status_code == 503
        check = r.json()["checks"]["queue"]
        assert check["ok"] is False and "0000000000001DEADBEEF" in check["detail"]
        queue.remove("0000000000001DEADBEEF")

        assert (await http.client.get("/readyz")).status_code == 200
        revoke(config, server_credentials(config).serial, "key-compromise")
        r = await http.client.get("/readyz")
        assert r.status_code == 503
        assert "revoked" in r.json()["checks"]["certificate"]["detail"]


async def test_metrics_scrape(config):
    async with running_http(config) as http:
        r = await http.client.get("/metrics")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain")
        text = r.text
        assert "mssgw_queue_messages 0.0" in text
        assert 'mssgw_certificate_expiry_days{role="server"' in text
        assert 'mssgw_crl_next_update_days{issuer=' in text


async def test_extension_adds_a_router_that_reaches_the_process_objects(config):
    router = APIRouter(prefix="/api/test")

    @router.get("/domain")
    def domain(ctx: Context) -> dict[str, str]:
        directory = ctx.directory("test")
        try:
            return {"domain": ctx.config.gateway.domain,
                    "mailboxes": str(len(directory.list_mailboxes()))}
        finally:
            directory.close()

    def register(app: FastAPI, context: WebContext) -> None:
        app.include_router(router)

    async with running_http(config, extensions=[register]) as http:
        r = await http.client.get("/api/test/domain")
        assert r.json() == {"domain": "test.localhost", "mailboxes": "0"}
        assert (await http.client.get("/healthz")).status_code == 404  # only what was given
        openapi = (await http.client.get("/openapi.json")).json()
        assert "/api/test/domain" in openapi["paths"]


async def test_disabled_when_listen_is_empty(gateway_home):
    from gateway.http import service

    cfg = gateway_home / "config.toml"
    cfg.write_text(cfg.read_text().replace('listen = "127.0.0.1:0"', 'listen = ""'))
    assert await service.start(Runtime(load_config(cfg))) == []
