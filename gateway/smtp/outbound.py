"""The outbound delivery worker: sends queued mail to trust-space operators, retries, bounces.

One runner per gateway (`mssgw serve` starts it in its first worker process; entries are locked
with flock, so a second runner would skip what the first holds). Every `queue_scan_interval`
seconds it picks the entries whose next attempt is due and, for each recipient domain:
- connects to the domain's route ([smtp] routes, else the domain on port 25), STARTTLS with our
  certificate as client certificate, and checks the peer's certificate: chain to a trust anchor,
  not revoked, subject = the DN the whitelist lists for that domain;
- sends; per recipient, 2xx is done, 5xx is a permanent failure, anything else (4xx, network,
  TLS or certificate trouble) is temporary and retried with exponential back-off
  (queue_retry_initial doubling up to queue_retry_max);
- after queue_lifetime seconds a temporary failure becomes permanent.
Permanent failures produce one DSN (RFC 3464) to the sender; the entry leaves the queue once no
recipient is pending.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway import maillog
from gateway.config import Config, parse_hostport
from gateway.smtp.checks import domain_of
from gateway.smtp.dsn import Failure
from gateway.smtp.gateway import Gateway
from gateway.store.interfaces import Intake, OutboundQueue
from gateway.store.queue import FAILED, SENT, RecipientState, Record

if TYPE_CHECKING:
    from gateway.runtime import Runtime

log = logging.getLogger("mssgw.queue")


@dataclass(frozen=True)
class Attempt:
    """The result of one attempt for one recipient."""

    recipient: str
    code: int  # SMTP reply code, or 0 when we could not talk to the peer (temporary)
    text: str
    remote_mta: str | None = None

    @property
    def status(self) -> str:
        if 200 <= self.code < 300:
            return "2.0.0"
        for token in self.text.split()[:1]:
            if token[:2] in ("4.", "5.") and token.count(".") == 2:
                return token
        return "5.0.0" if self.code >= 500 else "4.0.0"


class PeerRefused(Exception):
    """The peer's certificate is not the one the trust directory expects."""


def route(config: Config, domain: str) -> tuple[str, int]:
    target = config.smtp.routes.get(domain)
    if target:
        return parse_hostport(target)
    return domain, 25


class Runner:
    def __init__(self, config: Config, gateway: Gateway) -> None:
        self.config = config
        self.gw = gateway
        self.queue: OutboundQueue = gateway.queue
        self.intake: Intake = gateway.intake
        self._busy: set[str] = set()
        self._sem = asyncio.Semaphore(max(1, config.smtp.queue_concurrency))
        self._tasks: set[asyncio.Task[None]] = set()
        self._context: ssl.SSLContext | None = None

    def context(self) -> ssl.SSLContext:
        if self._context is None:
            from gateway.pki.tls import client_context

            # The peer is identified by its certificate's DN against the whitelist (below),
            # not by host name: routes may name hosts or addresses.
            self._context = client_context(self.config, check_hostname=False)
        return self._context

    async def run(self) -> None:
        interval = max(0.05, float(self.config.smtp.queue_scan_interval))
        last_sweep = 0.0
        while True:
            try:
                await self.scan()
                if time.monotonic() - last_sweep > 600:
                    last_sweep = time.monotonic()
                    await asyncio.to_thread(self.queue.sweep)
            except OSError as exc:  # out of descriptors, disk: one line, the next scan retries
                log.error("queue scan failed: %s", exc)
            except Exception:
                log.exception("queue scan failed")
            await asyncio.sleep(interval)

    async def scan(self) -> None:
        now = time.time()
        records = await asyncio.to_thread(self.queue.records)
        for record in records:
            due = record.next_attempt
            if record.id in self._busy or due is None or due > now:
                continue
            self._busy.add(record.id)
            task = asyncio.create_task(self._work(record.id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _work(self, qid: str) -> None:
        try:
            async with self._sem:
                await asyncio.to_thread(self.process, qid)
        except OSError as exc:  # as above: the message stays queued for the next attempt
            log.error("queue id %s: delivery attempt failed: %s", qid, exc)
        except Exception:
            log.exception("queue id %s: delivery attempt failed", qid)
        finally:
            self._busy.discard(qid)

    # --- one entry (runs in a thread, holding the entry's lock) -------------------------------

    def process(self, qid: str) -> None:
        with self.queue.locked(qid) as held:
            if not held:
                return
            record = self.queue.load(qid)
            now = time.time()
            due = [r for r in record.pending if r.next_attempt <= now]
            if not due:
                return
            data = self.queue.message(qid)
            by_domain: dict[str, list[RecipientState]] = {}
            for r in due:
                by_domain.setdefault(domain_of(r.address), []).append(r)
            for domain, rcpts in by_domain.items():
                attempts = self.attempt(domain, record.sender, [r.address for r in rcpts], data)
                for r, a in zip(rcpts, attempts, strict=True):
                    self._apply(record, r, a)
            self._finish(record, data)

    def _apply(self, record: Record, r: RecipientState, a: Attempt) -> None:
        now = time.time()
        r.attempts += 1
        r.last_error = None if a.code and a.code < 300 else f"{a.code or ''} {a.text}".strip()
        r.status = a.status
        r.remote_mta = a.remote_mta
        s = self.config.smtp
        reason = a.text
        if 200 <= a.code < 300:
            r.state = SENT
            result = "sent"
        elif a.code >= 500:
            r.state = FAILED
            result = "failed"
        elif now - record.created >= s.queue_lifetime:
            r.state = FAILED
            r.status = "4.4.7"
            r.last_error = (
                f"delivery expired after {int(now - record.created)} s in the queue; "
                f"last error: {r.last_error}"
            )
            result = "expired"
        else:
            delay = min(s.queue_retry_initial * 2 ** (r.attempts - 1), s.queue_retry_max)
            r.next_attempt = now + delay
            result, reason = "deferred", f"{a.text} (next attempt in {delay} s)"
        maillog.relay(record.id, r.address, result, relay_to=a.remote_mta,
                      status=f"{a.code or ''} {a.status or ''}".strip() or None, reason=reason,
                      attempts=r.attempts, kind=record.kind)

    def _finish(self, record: Record, data: bytes) -> None:
        failed = [r for r in record.recipients if r.state == FAILED]
        if record.pending:
            self.queue.save(record)
            return
        if failed and not record.dsn_sent and record.kind != "dsn":
            from gateway.pipeline import Message

            message = Message(record.id, record.sender, (), data, "internal")
            failures = [
                Failure(r.address, r.status or "5.0.0", r.last_error or "failed", r.remote_mta,
                        time.time())
                for r in failed
            ]
            local, queued = self.gw.dsn_for(message, failures)
            if local or queued:
                self.intake.store(local, queued)
                maillog.bounce(record.id, record.sender, [r.address for r in failed],
                               "; ".join(f.diagnostic for f in failures)[:500] or None)
        elif failed and record.kind == "dsn":
            log.warning("queue id %s: a DSN could not be delivered; dropped", record.id)
        self.queue.remove(record.id)

    # --- SMTP client ----------------------------------------------------------------------------

    def attempt(self, domain: str, sender: str, rcpts: Sequence[str], data: bytes) -> list[Attempt]:
        host, port = route(self.config, domain)
        mta = f"{host}:{port}" if port != 25 else host
        try:
            return self._send(domain, host, port, mta, sender, rcpts, data)
        except smtplib.SMTPResponseException as exc:
            err = exc.smtp_error
            text = err.decode("utf-8", "replace") if isinstance(err, bytes) else str(err)
            return [Attempt(r, exc.smtp_code, text, mta) for r in rcpts]
        except PeerRefused as exc:
            return [Attempt(r, 0, str(exc), mta) for r in rcpts]
        except (OSError, smtplib.SMTPException, ssl.SSLError) as exc:
            text = f"cannot deliver to {mta}: {type(exc).__name__}: {exc}"
            return [Attempt(r, 0, text, mta) for r in rcpts]

    def _send(
        self, domain: str, host: str, port: int, mta: str, sender: str, rcpts: Sequence[str],
        data: bytes,
    ) -> list[Attempt]:
        with smtplib.SMTP(host, port, local_hostname=self.config.gateway.hostname,
                          timeout=60) as client:
            client.ehlo()
            if not client.has_extn("starttls"):
                raise PeerRefused(f"{mta} does not offer STARTTLS; mail is only sent encrypted")
            client.starttls(context=self.context())
            sock = client.sock
            assert isinstance(sock, ssl.SSLSocket)
            self._check_peer(domain, sock)
            client.ehlo()
            code, msg = client.mail(sender)
            if code >= 300:
                raise smtplib.SMTPResponseException(code, msg)
            results: dict[str, Attempt] = {}
            accepted: list[str] = []
            for r in rcpts:
                code, msg = client.rcpt(r)
                if code < 300:
                    accepted.append(r)
                else:
                    results[r] = Attempt(r, code, msg.decode("utf-8", "replace"), mta)
            if accepted:
                code, reply = client.data(data)
                text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
                for r in accepted:
                    results[r] = Attempt(r, code, text, mta)
            return [results[r] for r in rcpts]

    def _check_peer(self, domain: str, sock: ssl.SSLSocket) -> None:
        from gateway.pki.kinds import Purpose
        from gateway.pki.tls import verify_peer

        result = verify_peer(self.config, sock, Purpose.SERVER)
        if not result.ok:
            raise PeerRefused(f"peer certificate refused: {result.reason}")
        if not self.gw.directory.peer_certificate_matches(domain, result.subject_dn):
            expected = self.gw.directory.expected_operator_dn(domain) or "(none listed)"
            raise PeerRefused(
                f"peer certificate subject {result.subject_dn!r} is not the operator DN the "
                f"whitelist lists for {domain} ({expected!r})"
            )


async def start(runtime: Runtime) -> asyncio.Task[None]:
    """Start the delivery worker in the running loop; cancel the task to stop it."""
    runner = Runner(runtime.config, runtime.smtp)
    return asyncio.create_task(runner.run(), name="mssgw-queue-runner")


__all__ = ["Attempt", "Runner", "route", "start"]
