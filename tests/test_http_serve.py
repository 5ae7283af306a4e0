"""The HTTPS listener in `mssgw serve`: served by every worker process on one port, over the
gateway's TLS, stopped with the gateway."""

from __future__ import annotations

import os
import signal
import time

from http_helpers import client
from smtp_helpers import setup_gateway
from test_smtp_crash import listening, start_serve


def test_every_worker_serves_https(gateway_home):
    cfg = gateway_home / "config.toml"
    cfg.write_text(cfg.read_text().replace("workers = 1", "workers = 2"))
    config = setup_gateway(gateway_home)
    proc, ports = start_serve(cfg)
    try:
        assert "https" in ports
        # "ready" is said when the first worker listens; the second may still be starting.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and listening(ports["https"]) < 2:
            time.sleep(0.1)
        assert listening(ports["https"]) == 2, "the second worker does not listen"
        pids = set()
        for _ in range(32):  # new connections: the kernel spreads them over the workers
            with client(config, ports["https"]) as c:
                r = c.get("/healthz")
                assert r.status_code == 200
                pids.add(r.json()["pid"])
        assert len(pids) == 2
        with client(config, ports["https"]) as c:
            r = c.get("/readyz")
            assert r.status_code == 200, r.text
            assert r.json()["ready"] is True
            assert "mssgw_queue_messages 0.0" in c.get("/metrics").text
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
