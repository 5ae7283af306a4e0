"""The one entry point every accepted message passes through before delivery.

    outcome = await process(message)

The SMTP server calls `process` after the policy checks and before storing anything; what the
outcome says is then stored durably (Maildirs, outbound queue, DSNs) in one commit, and only then
does the client get its 250. Later parts (prescriptions, dispensations, documents) add a step to
`STEPS` ("module:function"); each step is

    async def step(message: Message, outcome: Outcome) -> Outcome

and returns the outcome to continue with: the deliveries to make (possibly several different
messages, e.g. the patient's ordonnance and a notice to the prescriber) and the recipients
rejected, each with a reason. Rejected recipients never vanish: the sender gets a DSN saying why.
A step that raises makes the SMTP server answer 451 (temporary failure, nothing stored), so the
client retries; never a silent drop.

Rules for steps:
- CPU-heavy work (XML, signatures, PDF, images) goes through `run_cpu(func, *args)`, a process
  pool shared by the worker, never on the event loop; blocking I/O through `asyncio.to_thread`.
- Be idempotent where you can: a client that saw a 451 sends the message again.
- The identity of the sender is trusted (`message.authenticated` for submission, the relay peer's
  verified certificate for `channel == "relay"`).
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

if TYPE_CHECKING:
    from gateway.pipeline.pool import ProcessPool

Channel = Literal["submission", "relay", "internal"]


@dataclass(frozen=True)
class Message:
    """An accepted message, as the SMTP server hands it over."""

    queue_id: str  # stable id, in the logs and the Received: header
    sender: str  # envelope sender ("" for a bounce)
    recipients: tuple[str, ...]  # envelope recipients, lower-case
    data: bytes  # the whole message, our Received: header first, CRLF line ends
    channel: Channel
    authenticated: str | None = None  # the mailbox that logged in (submission)
    peer: str | None = None  # client address
    received_at: datetime | None = None


@dataclass(frozen=True)
class Delivery:
    """Deliver `data` to `recipients` (local mailboxes or remote, decided by the store)."""

    recipients: tuple[str, ...]
    data: bytes
    sender: str | None = None  # envelope sender for these copies; None: the message's


@dataclass(frozen=True)
class Rejection:
    recipient: str
    status: str  # enhanced status code, e.g. "5.6.0"
    reason: str  # a sentence for the DSN the sender receives


@dataclass(frozen=True)
class Outcome:
    deliveries: tuple[Delivery, ...] = ()
    rejections: tuple[Rejection, ...] = ()

    @classmethod
    def unchanged(cls, message: Message) -> Outcome:
        return cls(deliveries=(Delivery(message.recipients, message.data),))

    def reject(self, recipient: str, status: str, reason: str) -> Outcome:
        """This outcome with `recipient` removed from every delivery and rejected."""
        rcpt = recipient.lower()
        kept = tuple(
            replace(d, recipients=tuple(r for r in d.recipients if r != rcpt))
            for d in self.deliveries
        )
        return Outcome(
            deliveries=tuple(d for d in kept if d.recipients),
            rejections=(*self.rejections, Rejection(rcpt, status, reason)),
        )


Step = Callable[[Message, Outcome], Awaitable[Outcome]]

# "module:function" entries, run in this order. Later parts append theirs here.
STEPS: list[str] = [
    "gateway.flows.prescribe:step",  # doctor → patient: the ordonnance
    "gateway.flows.verify:step",  # patient → pharmacy: the verdict on a forwarded ordonnance
    "gateway.flows.dispense:step",  # pharmacy → prescriber: dispensations; cancellations
]

_steps: list[Step] | None = None

# The configuration of the process running the pipeline (set by the SMTP Gateway, which every
# listener and the queue runner share): steps read it through `config()`.
_config: Any = None


def configure(config: Any) -> None:
    global _config
    _config = config


def config() -> Any:
    if _config is None:
        raise RuntimeError("pipeline.configure(config) was not called in this process")
    return _config


def _load_steps() -> list[Step]:
    global _steps
    if _steps is None:
        loaded: list[Step] = []
        for spec in STEPS:
            module, _, func = spec.partition(":")
            loaded.append(getattr(importlib.import_module(module), func))
        _steps = loaded
    return _steps


async def process(message: Message) -> Outcome:
    """Run every step; with none, the message is delivered unchanged to its recipients."""
    outcome = Outcome.unchanged(message)
    for step in _load_steps():
        outcome = await step(message, outcome)
    return outcome


_pool: ProcessPool | None = None
_T = TypeVar("_T")


def _executor() -> ProcessPool:
    global _pool
    if _pool is None:
        from gateway.pipeline.pool import ProcessPool

        # One pool per worker process, created on first use. "spawn", not fork: the worker has
        # threads (group commit, executors) and forking a threaded process can copy a held lock.
        _pool = ProcessPool(
            pool_size(),
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_watch_parent,
            initargs=(os.getpid(),),
        )
    return _pool


def pool_size() -> int:
    """Processes in each worker's pool: at least two, so that while one waits on an fsync (the
    flows commit the registry and the DMP, and write the audit log, durably) the other
    computes; more when there are fewer workers than cores. On the 2-core machine, one per
    worker gave 90.4 prescriptions/s and two 95.5 (bench_journey, means of 5 interleaved runs;
    two won 4 of the 5): the cores idle less, and the group commits gather more deliveries per
    fsync, so the workers spend less CPU per prescription. Each process costs ~65 MB."""
    cores = os.cpu_count() or 2
    workers = getattr(getattr(_config, "gateway", None), "workers", 0) or cores
    return max(2, -(-cores // workers))


def _watch_parent(parent: int) -> None:
    """In each pool process: end when the worker that started it is gone. A pool process
    waits on a queue whose write end it holds itself, so it never sees its worker die; a worker
    killed, or ended the way multiprocessing ends children (os._exit: no atexit, so no
    executor shutdown), used to leave its pool processes running, one more per restart."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


async def run_cpu(func: Callable[..., _T], *args: Any) -> _T:
    """Run CPU-heavy `func(*args)` (picklable) in the process pool, off the event loop. A pool
    process that dies during the call makes it raise BrokenProcessPool (the next call gets a
    new process); one that runs past [gateway] pool_call_timeout is killed and the call raises
    CallTimeout (a TimeoutError): the SMTP server then answers 451, the client retries."""
    limit = getattr(getattr(_config, "gateway", None), "pool_call_timeout", 0)
    result: _T = await _executor().run(func, *args, deadline=limit or None)
    return result


def shutdown() -> None:
    """Stop the pool: queued calls are cancelled, a running one finishes, and the processes
    are waited for (nothing is left running after the worker)."""
    global _pool
    if _pool is not None:
        _pool.shutdown()
        _pool = None


__all__ = [
    "STEPS",
    "Channel",
    "Delivery",
    "Message",
    "Outcome",
    "Rejection",
    "Step",
    "process",
    "run_cpu",
]
