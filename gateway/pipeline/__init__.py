"""The one entry point every accepted message passes through before delivery.

    outcome = await pipeline.process(message)

The SMTP server calls `process` after the policy checks and before storing anything; what the
outcome says is then stored durably (Maildirs, outbound queue, DSNs) in one commit, and only then
does the client get its 250. The process's root (`gateway.runtime`) builds the `Pipeline` with
its steps (`gateway.flows.steps.STEPS`, typed references); each step is

    async def step(pipeline: Pipeline, message: Message, outcome: Outcome) -> Outcome

and returns the outcome to continue with: the deliveries to make (possibly several different
messages, e.g. the patient's ordonnance and a notice to the prescriber) and the recipients
rejected, each with a reason. Rejected recipients never vanish: the sender gets a DSN saying why.
A step that raises makes the SMTP server answer 451 (temporary failure, nothing stored), so the
client retries; never a silent drop.

Rules for steps:
- CPU-heavy work (XML, signatures, PDF, images) goes through `pipeline.run_cpu(func, *args)`, a
  process pool shared by the worker, never on the event loop, or `pipeline.run_flow(func,
  *args)`, which also gives `func` the pool process's flow context (its storage, opened once);
  blocking I/O through `asyncio.to_thread`.
- Be idempotent where you can: a client that saw a 451 sends the message again.
- The identity of the sender is trusted (`message.authenticated` for submission, the relay peer's
  verified certificate for `channel == "relay"`).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from gateway import metrics
from gateway.config import Config

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


# `async def step(pipeline, message, outcome) -> outcome`: the pipeline gives its steps the
# configuration (`pipeline.config`) and its process pool (`run_cpu`, `run_flow`).
Step = Callable[["Pipeline", Message, Outcome], Awaitable[Outcome]]

_T = TypeVar("_T")


class Pipeline:
    """The steps every accepted message goes through, and the process pool they run their
    CPU-heavy work in. One per worker process, built by its root (`gateway.runtime`) with the
    steps (`gateway.flows.steps.STEPS`) and what a pool process needs to serve the flows
    (`context`: a top-level function and its picklable arguments, called once in each pool
    process, lazily; its result is the first argument of every `run_flow` call there)."""

    def __init__(
        self,
        config: Config,
        steps: Sequence[Step] = (),
        *,
        context: tuple[Callable[..., Any], tuple[Any, ...]] | None = None,
    ) -> None:
        from gateway.pipeline.pool import context_spec

        self.config = config
        self.steps = list(steps)
        self._context = context_spec(context[0], *context[1]) if context else None
        self._pool: ProcessPool | None = None
        self._owned = True

    def share_pool(self, pool: ProcessPool) -> None:
        """Run in `pool`, which the caller owns, instead of starting one: the tests run many
        gateways in one process, and one pool serves them all (a pool process keeps one flow
        context per configuration)."""
        self.shutdown()
        self._pool, self._owned = pool, False

    async def process(self, message: Message) -> Outcome:
        """Run every step; with none, the message is delivered unchanged to its recipients."""
        outcome = Outcome.unchanged(message)
        with metrics.pipeline_timer(message.channel):
            for step in self.steps:
                outcome = await step(self, message, outcome)
        return outcome

    def _executor(self) -> ProcessPool:
        if self._pool is None:
            self._pool = new_pool(self.config.gateway.workers)  # on first use
        return self._pool

    @property
    def deadline(self) -> float | None:
        """[gateway] pool_call_timeout: seconds one pool call may run (None: no limit)."""
        return self.config.gateway.pool_call_timeout or None

    async def run_cpu(self, func: Callable[..., _T], *args: Any) -> _T:
        """Run CPU-heavy `func(*args)` (picklable) in the process pool, off the event loop. A
        pool process that dies during the call makes it raise BrokenProcessPool (the next call
        gets a new process); one that runs past [gateway] pool_call_timeout is killed and the
        call raises CallTimeout (a TimeoutError): the SMTP server answers 451, the client
        retries."""
        result: _T = await self._executor().run(func, *args, deadline=self.deadline)
        return result

    async def run_flow(self, func: Callable[..., _T], *args: Any) -> _T:
        """`func(context, *args)` in the process pool, `context` being what the pool process
        built for the flows (its root's flow context, opened once per process); the same
        deadline as run_cpu."""
        if self._context is None:
            raise RuntimeError("this pipeline has no flow context")
        result: _T = await self._executor().run_in_context(
            self._context, func, *args, deadline=self.deadline)
        return result

    def shutdown(self) -> None:
        """Stop the pool: queued calls are cancelled, a running one finishes, and the processes
        are waited for (nothing is left running after the worker)."""
        if self._pool is not None and self._owned:
            self._pool.shutdown()
        self._pool = None

    close = shutdown


def new_pool(workers: int) -> ProcessPool:
    """A worker's process pool. "spawn", not fork: the worker has threads (group commit,
    executors) and forking a threaded process can copy a held lock."""
    from gateway.pipeline.pool import ProcessPool

    return ProcessPool(
        pool_size(workers),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_watch_parent,
        initargs=(os.getpid(),),
    )


def pool_size(workers: int) -> int:
    """Processes in each worker's pool: at least two, so that while one waits on an fsync (the
    flows commit the registry and the DMP, and write the audit log, durably) the other
    computes; more when there are fewer workers than cores. On the 2-core machine, one per
    worker gave 90.4 prescriptions/s and two 95.5 (bench_journey, means of 5 interleaved runs;
    two won 4 of the 5): the cores idle less, and the group commits gather more deliveries per
    fsync, so the workers spend less CPU per prescription. Each process costs ~65 MB."""
    cores = os.cpu_count() or 2
    return max(2, -(-cores // (workers or cores)))


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


__all__ = [
    "Channel",
    "Delivery",
    "Message",
    "Outcome",
    "Pipeline",
    "Rejection",
    "Step",
    "new_pool",
    "pool_size",
]
