"""What the gateway counts, for `/metrics` (Prometheus text format, prometheus-client).

Instrumented code calls one function of this module in one line, e.g.
`metrics.message_accepted("smtp submission")`: the listeners, the queue and the flows stay
readable, and a merge in their code touches one line. Names and labels live here only.

Processes: `mssgw serve` runs one worker per core and, in each, a pool of document processes.
prometheus-client's multiprocess mode makes every process write its values to its own
memory-mapped file in one folder ([storage] metrics), which `/metrics` (served by whichever
worker the kernel hands the connection) adds up. The mode is chosen by the environment variable
PROMETHEUS_MULTIPROC_DIR *before* the first metric is made, so the metric objects are made
lazily, on first use: `enable_multiprocess(folder)` (called by the supervisor before it forks)
then always comes first. Without it (tests running a listener inside pytest, one-shot
commands) the values live in the process, in `LIVE`.

What is computed when scraped rather than counted (queue depth and age, certificate expiry)
is in `gateway/metrics/exposition.py`.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

ENV = "PROMETHEUS_MULTIPROC_DIR"

# Why a message was refused, as a small fixed set of label values (a label per reply text
# would make a series per address).
RefusalReason = Literal[
    "auth",  # x.7.8: authentication needed or refused
    "sender",  # 553, x.1.7, x.1.8: the envelope sender is not acceptable
    "recipient",  # x.1.y: unknown or suspended mailbox
    "size",  # x.3.4: message too big
    "quota",  # x.2.2: the recipient's mailbox is full
    "rate",  # 4.7.0, 4.7.1: rate limit
    "policy",  # x.7.y: patient rules, closed threads, relay refused; too many recipients
    "content",  # x.6.y: malformed message (bare CR/LF, header)
    "temporary",  # other 4xx: storage or pipeline failure
]
Prescription = Literal["registered", "refused", "dispensed", "dispensation-refused"]

# Pipeline latency: a transport-only message takes ~1 ms, a prescription tens of ms, a big
# XDM package or a loaded pool seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                   30.0)


def multiprocess_folder() -> Path | None:
    value = os.environ.get(ENV)
    return Path(value) if value else None


def enable_multiprocess(folder: Path) -> None:
    """Empty `folder` and make every metric of this process and its children (forked after
    this call) go there. Called once by the supervisor of `mssgw serve`, before any metric."""
    if "prometheus_client.values" in sys.modules and os.environ.get(ENV) != str(folder):
        # The value class was chosen at import: this process would count in memory, unseen.
        raise RuntimeError("gateway.metrics: prometheus_client was imported before "
                           "enable_multiprocess(); import it lazily")
    if folder.is_dir():
        for entry in folder.iterdir():
            if entry.suffix == ".db":
                entry.unlink(missing_ok=True)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.environ[ENV] = str(folder)


def process_gone(pid: int) -> None:
    """A worker process died: its live gauges (IMAP sessions open) stop counting."""
    folder = multiprocess_folder()
    if folder is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, str(folder))


def discard_folder(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        r = registry
        self.connections = Counter(
            "mssgw_connections", "Connections accepted, per listener", ["listener"], registry=r)
        self.tls_failures = Counter(
            "mssgw_tls_handshake_failures", "TLS handshakes that failed, per listener",
            ["listener"], registry=r)
        self.accepted = Counter(
            "mssgw_messages_accepted", "Messages accepted (250 sent), per listener",
            ["listener"], registry=r)
        self.refused = Counter(
            "mssgw_messages_refused", "Recipients or messages refused, per listener and reason",
            ["listener", "reason"], registry=r)
        self.delivered = Counter(
            "mssgw_deliveries", "Copies delivered: into a local mailbox, or relayed to a peer",
            ["kind"], registry=r)
        self.relay_attempts = Counter(
            "mssgw_relay_attempts", "Relay attempts to peers, by result",
            ["result"], registry=r)
        self.bounced = Counter(
            "mssgw_bounces", "Delivery status notifications (bounces) generated", registry=r)
        self.pipeline = Histogram(
            "mssgw_pipeline_seconds", "Time a message spends in the pipeline (document flows)",
            ["listener"], buckets=LATENCY_BUCKETS, registry=r)
        self.prescriptions = Counter(
            "mssgw_prescriptions",
            "E-prescriptions registered or refused, dispensations recorded or refused",
            ["event"], registry=r)
        self.imap_sessions = Counter(
            "mssgw_imap_sessions", "IMAP sessions opened", registry=r)
        self.imap_open = Gauge(
            "mssgw_imap_sessions_open", "IMAP sessions open now", registry=r,
            multiprocess_mode="livesum")
        self.logins = Counter(
            "mssgw_logins", "Logins (SMTP AUTH, IMAP), by protocol and result",
            ["protocol", "result"], registry=r)
        self.lockouts = Counter(
            "mssgw_lockouts", "Logins refused because the account or client was locked out",
            ["protocol"], registry=r)


_metrics: _Metrics | None = None
_live: CollectorRegistry | None = None


def live_registry() -> CollectorRegistry:
    """The registry of this process's own metrics (what /metrics shows outside `serve`)."""
    global _live
    if _live is None:
        from prometheus_client import CollectorRegistry

        _live = CollectorRegistry(auto_describe=True)
    return _live


def _m() -> _Metrics:
    global _metrics
    if _metrics is None:
        _metrics = _Metrics(live_registry())
    return _metrics


# --- the one-line calls --------------------------------------------------------------------


def connection(listener: str) -> None:
    _m().connections.labels(listener).inc()


_F = TypeVar("_F")


def counting(factory: Callable[[], _F], listener: str) -> Callable[[], _F]:
    """A listener's protocol factory that counts each connection. asyncio calls the factory
    when it accepts the TCP connection, before any TLS handshake."""
    counter = _m().connections.labels(listener)

    def make() -> _F:
        counter.inc()
        return factory()

    return make


def tls_failure(listener: str) -> None:
    _m().tls_failures.labels(listener).inc()


def message_accepted(listener: str) -> None:
    _m().accepted.labels(listener).inc()


def message_refused(listener: str, reason: RefusalReason) -> None:
    _m().refused.labels(listener, reason).inc()


def delivered(kind: Literal["local", "relay"], count: int = 1) -> None:
    if count:
        _m().delivered.labels(kind).inc(count)


def relay_attempt(result: Literal["sent", "deferred", "failed", "expired"]) -> None:
    _m().relay_attempts.labels(result).inc()


def bounced() -> None:
    _m().bounced.inc()


def pipeline_seconds(listener: str, seconds: float) -> None:
    _m().pipeline.labels(listener).observe(seconds)


@contextmanager
def pipeline_timer(listener: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        pipeline_seconds(listener, time.perf_counter() - started)


def prescription(event: Prescription) -> None:
    _m().prescriptions.labels(event).inc()


def imap_session_opened() -> None:
    m = _m()
    m.imap_sessions.inc()
    m.imap_open.inc()


def imap_session_closed() -> None:
    _m().imap_open.dec()


def login(protocol: Literal["smtp", "imap"], ok: bool) -> None:
    _m().logins.labels(protocol, "ok" if ok else "failed").inc()


def lockout(protocol: Literal["smtp", "imap"]) -> None:
    _m().lockouts.labels(protocol).inc()


def refusal_reason(reply: str) -> RefusalReason:
    """The reason class of an SMTP refusal, from its reply code and enhanced status code
    (RFC 3463): 'x.1.y' addressing, 'x.2.y'/'x.3.4' mailbox and size, 'x.7.y' policy..."""
    code, _, rest = reply.partition(" ")
    enhanced = rest.split(" ", 1)[0] if rest[:1].isdigit() else ""
    _, subject, detail = (enhanced.split(".") + ["", "", ""])[:3]
    if subject == "7" and detail == "8":
        return "auth"
    if subject == "7" and detail in ("0", "1") and code.startswith("4"):
        return "rate"
    if code == "553" or subject == "1" and detail in ("7", "8"):
        return "sender"
    if subject == "1" or subject == "2" and detail == "1":
        return "recipient"
    if subject == "2" and detail == "2":
        return "quota"
    if subject == "3" and detail == "4":
        return "size"
    if subject == "5" and detail == "3":
        return "policy"
    if code.startswith("4"):
        return "temporary"
    if subject == "6":
        return "content"
    return "policy"
