"""`/metrics`: the counters of every process, and what is measured when scraped.

Counted (gateway/metrics/__init__.py): added up across the worker processes from the
multiprocess folder, or this process's own values outside `mssgw serve`.
Measured at scrape time, by the worker that serves the request (cheap, and never stale):
- the outbound queue: messages waiting and the age of the oldest (its id encodes its arrival,
  so a directory listing is enough);
- certificates: days until the server certificate, our CAs and the imported trust anchors
  expire, and until each CRL we rely on is out of date.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from datetime import datetime

from cryptography import x509
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from gateway import metrics
from gateway.config import Config
from gateway.store.interfaces import OutboundQueue

log = logging.getLogger("mssgw.metrics")

CONTENT_TYPE = CONTENT_TYPE_LATEST


def _days_left(not_after: datetime, now: float) -> float:
    return round((not_after.timestamp() - now) / 86400, 3)


class QueueCollector(Collector):
    def __init__(self, queue: OutboundQueue) -> None:
        self.queue = queue

    def collect(self) -> Iterator[Metric]:
        ids = self.queue.ids()
        depth = GaugeMetricFamily("mssgw_queue_messages", "Messages in the outbound queue")
        depth.add_metric([], len(ids))
        yield depth
        oldest = GaugeMetricFamily(
            "mssgw_queue_oldest_age_seconds", "Age of the oldest message in the outbound queue "
            "(0 when it is empty)")
        age = 0.0
        if ids:  # "<13 hex digits: microseconds since the epoch><8 random>", sorted by arrival
            age = max(0.0, time.time() - int(ids[0][:13], 16) / 1e6)
        oldest.add_metric([], round(age, 3))
        yield oldest


class CertificateCollector(Collector):
    """Days to expiry of what the gateway presents and trusts. A file that cannot be read is
    left out (and logged): the scrape still answers."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def certificates(self) -> Iterable[tuple[str, str, x509.Certificate]]:
        from gateway.pki.anchors import anchor_certificates
        from gateway.pki.ca import server_credentials
        from gateway.pki.dn import subject_dn
        from gateway.pki.files import Layout, load_cached
        from gateway.pki.kinds import CA

        try:
            creds = server_credentials(self.config)
            server = load_cached(creds.cert_path, x509.load_pem_x509_certificates)[0]
            yield "server", subject_dn(server.subject), server
        except Exception as exc:  # no certificate yet, unreadable file: say so, go on
            log.warning("metrics: cannot read the server certificate: %s", exc)
        layout = Layout.of(self.config)
        for ca in CA:
            path = layout.ca_cert(ca)
            if path.exists():
                cert = load_cached(path, x509.load_pem_x509_certificates)[0]
                yield f"ca-{ca.value}", subject_dn(cert.subject), cert
        for cert in anchor_certificates(self.config):
            yield "anchor", subject_dn(cert.subject), cert

    def crls(self) -> Iterable[tuple[str, x509.CertificateRevocationList]]:
        from gateway.pki.dn import subject_dn
        from gateway.pki.files import Layout, load_cached

        layout = Layout.of(self.config)
        paths = sorted((layout.root / "crl").glob("*.crl.pem"))
        paths += sorted(layout.peer_crls.glob("*.crl.pem")) if layout.peer_crls.is_dir() else []
        for path in paths:
            try:
                crl = load_cached(path, x509.load_pem_x509_crl)
            except (OSError, ValueError) as exc:
                log.warning("metrics: cannot read CRL %s: %s", path.name, exc)
                continue
            yield subject_dn(crl.issuer), crl

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        certs = GaugeMetricFamily(
            "mssgw_certificate_expiry_days", "Days until a certificate expires (negative: "
            "expired)", labels=["role", "subject"])
        for role, subject, cert in self.certificates():
            certs.add_metric([role, subject], _days_left(cert.not_valid_after_utc, now))
        yield certs
        crls = GaugeMetricFamily(
            "mssgw_crl_next_update_days", "Days until a CRL is out of date (its nextUpdate; "
            "negative: stale)", labels=["issuer"])
        for issuer, crl in self.crls():
            if crl.next_update_utc is not None:
                crls.add_metric([issuer], _days_left(crl.next_update_utc, now))
        yield crls


def registry(config: Config, queue: OutboundQueue) -> CollectorRegistry:
    """A registry holding everything `/metrics` shows, made per scrape (the multiprocess
    collector reads the folder when collected)."""
    folder = metrics.multiprocess_folder()
    if folder is None:
        reg = CollectorRegistry(auto_describe=True)
        reg.register(_Live())
    else:
        reg = CollectorRegistry()
        MultiProcessCollector(reg, path=str(folder))
    reg.register(QueueCollector(queue))
    reg.register(CertificateCollector(config))
    return reg


class _Live(Collector):
    """This process's own counters (outside `mssgw serve`)."""

    def collect(self) -> Iterator[Metric]:
        yield from metrics.live_registry().collect()


def render(config: Config, queue: OutboundQueue) -> bytes:
    """The text exposition (blocking: reads files; call it off the event loop)."""
    return generate_latest(registry(config, queue))
