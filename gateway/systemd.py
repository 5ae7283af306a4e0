"""systemd integration of `mssgw serve` (Type=notify, WatchdogSec): readiness and watchdog.

Without NOTIFY_SOCKET in the environment (not started by systemd) everything here is a no-op.
- READY=1 once every worker listens; STOPPING=1 when the gateway stops; STATUS= lines.
- The watchdog: when systemd asks for one (WATCHDOG_USEC), the supervisor polls
  the gateway's own `/readyz` over HTTPS (through the listeners the workers serve: a wedged
  worker loop or a broken TLS set-up fails it too) every half period and sends WATCHDOG=1
  only while it answers 200. When it stops being ready for longer than WatchdogSec, systemd
  restarts the gateway (Restart=on-failure in deploy/mssgw.service).
  With no HTTPS listener configured, the same checks run in the supervisor directly.

The protocol (sd_notify(3)): one datagram "KEY=value\\n..." to the AF_UNIX socket named by
NOTIFY_SOCKET ('@' = abstract namespace). Written here in a few lines rather than adding a
C-extension dependency (systemd-python needs libsystemd headers to build).
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import time

from gateway.config import Config, parse_hostport

log = logging.getLogger("mssgw.systemd")


def notify(*lines: str) -> bool:
    """Send `lines` to systemd; False when not under systemd (or the socket is gone)."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.connect(address)
            sock.sendall("\n".join(lines).encode())
        except OSError as exc:
            log.warning("systemd notification failed: %s", exc)
            return False
    return True


def watchdog_interval() -> float | None:
    """Half the watchdog period systemd asked for, or None (no watchdog, or not for us)."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6


def probe(
    config: Config, timeout: float = 5.0, address: str | None = None
) -> tuple[bool, dict[str, dict[str, object]]]:
    """(ready, checks) from GET /readyz on our own HTTPS listener (through the workers: a
    wedged worker or a broken TLS set-up fails it too); without an HTTPS listener, the checks
    run here. `checks` maps each check to {"ok", "detail"}. `address` (HOST:PORT) replaces
    [http] listen: where the listener really is (port 0 resolved, a proxy)."""
    address = address or config.http.listen
    if not address:
        from gateway.health import check_all
        from gateway.runtime import Runtime

        runtime = Runtime(config)
        try:
            done = check_all(config, runtime.outbound_queue)
        finally:
            runtime.close()
        return all(c.ok for c in done), {c.name: c.as_json() for c in done}
    from gateway.pki.tls import client_context

    host, port = parse_hostport(address)
    if host in ("0.0.0.0", "::"):  # noqa: S104 - listening everywhere: ask loopback
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"  # noqa: S104
    # Our own listener: the chain is checked (our CA, or the anchors of an imported server
    # certificate), not the name (we connect to an address).
    ctx = client_context(config, present_certificate=False, check_hostname=False)
    conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
    try:
        conn.request("GET", "/readyz")
        response = conn.getresponse()
        body = response.read(65536)
    except (OSError, http.client.HTTPException) as exc:
        return False, {"https": {"ok": False, "detail": f"{host}:{port}/readyz: {exc}"}}
    finally:
        conn.close()
    try:
        checks = json.loads(body)["checks"]
    except (ValueError, KeyError, TypeError):
        checks = {"https": {"ok": False, "detail": f"/readyz answered {response.status}"}}
    return response.status == 200, checks


def summary(checks: dict[str, dict[str, object]]) -> str:
    bad = [f"{name}: {c['detail']}" for name, c in checks.items() if not c.get("ok")]
    return "; ".join(bad) or "ready"


class Watchdog:
    """Feeds systemd's watchdog while /readyz says ready. Driven by the supervisor's own loop
    (`wait()` / `tick()`), not a thread: the supervisor forks workers, and forking a process
    that runs other threads can copy a lock one of them holds."""

    def __init__(self, config: Config, interval: float) -> None:
        self.config = config
        self.interval = interval
        self.next = time.monotonic()
        self.last: bool | None = None

    def wait(self) -> float:
        """Seconds until the next probe."""
        return max(0.0, self.next - time.monotonic())

    def tick(self) -> None:
        if time.monotonic() < self.next:
            return
        try:
            ready, checks = probe(self.config, timeout=max(1.0, min(10.0, self.interval / 2)))
            why = summary(checks)
        except Exception as exc:  # a bug here must not kill the supervisor
            ready, why = False, f"{type(exc).__name__}: {exc}"
        if ready:
            notify("WATCHDOG=1", "STATUS=ready")
        else:
            notify(f"STATUS=not ready: {why}"[:1000])
        if ready != self.last:
            if ready:
                log.info("readiness: ready")
            else:
                log.warning("readiness: NOT ready: %s", why)
            self.last = ready
        self.next = time.monotonic() + self.interval
