"""The worker's process pool, driven from the event loop: two pipes per process, no threads.

Why not `concurrent.futures.ProcessPoolExecutor`: every call through it crosses three threads of
the worker (the event loop, the executor's manager thread, the call queue's feeder thread) that
take turns on the interpreter lock, and the result is read and unpickled by the manager thread
then handed back to the loop. Under bench_journey that plumbing was ~30% of the worker's Python
time (py-spy --gil); in a micro-benchmark (2 processes, 4 calls in flight, a 157 KB result like
a prescription's Plan) the worker spent ~690 us of CPU per call through the executor, ~490 us
here. Here the event loop writes the pickled call to an idle process's pipe and reads the
pickled result from its other pipe as it arrives (non-blocking, through the loop's selector).
A process that dies fails only its own call and is replaced, where the executor marks the
whole pool broken and fails every later call.

Each process serves one call at a time (the pool queues the rest), so a pipe never holds more
than one request or one result. Frames are an 8-byte length then a pickle (protocol 5).

A call may have a deadline: past it the caller gets CallTimeout and the process, which may be
stuck for good (a pathological document, a library loop), is killed and replaced, so a hung
call holds neither the client nor a pool process for ever.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import fcntl
import multiprocessing
import os
import pickle
import struct
import threading
import traceback
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import Connection
from typing import Any

_LEN = struct.Struct("!Q")
PIPE_SIZE = 1 << 20  # Linux's default /proc/sys/fs/pipe-max-size


class CallTimeout(TimeoutError):
    """A pool call ran past its deadline; its process was killed (the next call gets a new one)."""


class _Process:
    """One pool process and the parent's ends of its two pipes."""

    def __init__(
        self, ctx: Any, initializer: Callable[..., None] | None, initargs: tuple[Any, ...]
    ) -> None:
        # multiprocessing's pipes: spawn hands their other ends to the child.
        req_r, self._req = ctx.Pipe(duplex=False)
        self._res, res_w = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=_serve, args=(req_r, res_w, initializer, initargs),
                                name="mssgw-pool", daemon=False)
        try:
            self.proc.start()
        finally:
            req_r.close()
            res_w.close()
        self.req_w, self.res_r = self._req.fileno(), self._res.fileno()
        with contextlib.suppress(OSError):  # above the system's limit: 64 KB it is
            # A result in one write and one read, where 64 KB took several rounds of the
            # process blocking on a full pipe and the loop waking to drain it.
            fcntl.fcntl(self.res_r, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        os.set_blocking(self.req_w, False)
        os.set_blocking(self.res_r, False)
        self.open = True

    def close(self) -> None:
        """Close the pipes: the process ends after its current call (its result write fails)."""
        if self.open:
            self.open = False
            self._req.close()
            self._res.close()


class _Call:
    """One call in flight on one process: sends the request, reads the result frame."""

    def __init__(self, pool: ProcessPool, process: _Process, payload: bytes,
                 loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]) -> None:
        self.pool, self.process, self.loop, self.future = pool, process, loop, future
        self.out = memoryview(_LEN.pack(len(payload)) + payload)
        self.head = b""  # the result's length, once read
        self.body = memoryview(b"")
        self.got = 0
        self.timer: asyncio.TimerHandle | None = None
        loop.add_reader(process.res_r, self._readable)
        self._writable()

    def expire_after(self, seconds: float) -> None:
        self.timer = self.loop.call_later(seconds, self._expire, seconds)

    def _expire(self, seconds: float) -> None:
        if self.future.done() and not self.process.open:
            return
        self.loop.remove_reader(self.process.res_r)
        self.loop.remove_writer(self.process.req_w)
        with contextlib.suppress(OSError):
            self.process.proc.kill()
        self.process.close()
        self.pool._died(self.process)
        if not self.future.done():
            self.future.set_exception(CallTimeout(
                f"the call did not finish within {seconds:g} s: its pool process was replaced"))

    def _writable(self) -> None:
        try:
            while self.out:
                self.out = self.out[os.write(self.process.req_w, self.out):]
        except BlockingIOError:  # a large message: the rest when the pipe drains
            self.loop.add_writer(self.process.req_w, self._writable)
            return
        except OSError as exc:  # the process is gone
            self._end(None, exc)
            return
        self.loop.remove_writer(self.process.req_w)

    def _readable(self) -> None:
        fd = self.process.res_r
        try:
            while len(self.head) < _LEN.size:
                chunk = os.read(fd, _LEN.size - len(self.head))
                if not chunk:
                    self._end(None, None)
                    return
                self.head += chunk
                if len(self.head) == _LEN.size:
                    # Read into a buffer of the result's size: no larger one to allocate.
                    self.body = memoryview(bytearray(_LEN.unpack(self.head)[0]))
            while self.got < len(self.body):
                n = os.readv(fd, [self.body[self.got:]])
                if not n:
                    self._end(None, None)
                    return
                self.got += n
        except BlockingIOError:
            return
        except OSError as exc:
            self._end(None, exc)
            return
        self._end(self.body, None)

    def _end(self, frame: memoryview | None, error: BaseException | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.loop.remove_reader(self.process.res_r)
        self.loop.remove_writer(self.process.req_w)
        if frame is None:  # the process died (or was killed) during the call
            self.process.close()
            self.pool._died(self.process)
            if not self.future.done():
                why = f" ({error})" if error else ""
                self.future.set_exception(
                    BrokenProcessPool(f"a pool process ended during the call{why}"))
            return
        try:
            ok, value = pickle.loads(frame)  # noqa: S301 - from our own pool process
        except Exception as exc:
            ok, value = False, exc
        self.pool._release(self.process)
        if not self.future.done():  # not cancelled meanwhile
            if ok:
                self.future.set_result(value)
            else:
                self.future.set_exception(value)


class ProcessPool:
    """`await pool.run(func, *args)`: `func(*args)` (picklable) in one of `size` processes,
    started on first use.

    `await pool.run_in_context(context, func, *args)`: `func(made, *args)`, where `made` is what
    the process made from `context` (`context_spec(factory, *args)`: `factory(*args)`, called
    once per process and context, at its first such call, and kept until the process ends,
    then closed if it has a `close()`): the flows' storage, opened once per process."""

    def __init__(self, size: int, *, initializer: Callable[..., None] | None = None,
                 initargs: tuple[Any, ...] = (), mp_context: Any = None) -> None:
        self.size = size
        self.ctx = mp_context or multiprocessing.get_context("spawn")
        self.initializer, self.initargs = initializer, initargs
        self._idle: list[_Process] = []
        self._all: list[_Process] = []
        self._waiting: collections.deque[
            tuple[asyncio.AbstractEventLoop, asyncio.Future[_Process]]] = collections.deque()
        # A worker has one event loop; the tests run several (servers in threads) on one pool.
        self._lock = threading.Lock()
        self._closed = False
        # Before multiprocessing's own exit hook, which waits for every child: an idle pool
        # process waits for a call until its pipe closes (the executor did the same).
        atexit.register(self.shutdown)

    async def run(self, func: Callable[..., Any], /, *args: Any,
                  deadline: float | None = None) -> Any:
        """`func(*args)` in a pool process; with `deadline` (seconds, counted once a process
        has the call), CallTimeout past it and the process replaced."""
        return await self._call(func, args, None, deadline)

    async def run_in_context(self, context: bytes, func: Callable[..., Any], /, *args: Any,
                             deadline: float | None = None) -> Any:
        """`func(made, *args)` in a pool process (see the class); `deadline` as for run."""
        return await self._call(func, args, context, deadline)

    async def _call(self, func: Callable[..., Any], args: tuple[Any, ...], context: bytes | None,
                    deadline: float | None) -> Any:
        payload = pickle.dumps((func, args, context), protocol=5)
        process = await self._acquire()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        call = _Call(self, process, payload, loop, future)
        if deadline is not None and not future.done():
            call.expire_after(deadline)
        return await future

    async def _acquire(self) -> _Process:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._closed:
                raise RuntimeError("the process pool is shut down")
            if self._idle:
                return self._idle.pop()
            if len(self._all) < self.size:
                process = _Process(self.ctx, self.initializer, self.initargs)
                self._all.append(process)
                return process
            waiter: asyncio.Future[_Process] = loop.create_future()
            self._waiting.append((loop, waiter))
        return await waiter

    def _release(self, process: _Process) -> None:
        with self._lock:
            while self._waiting:
                loop, waiter = self._waiting.popleft()
                if not waiter.done():
                    loop.call_soon_threadsafe(self._hand, process, waiter)
                    return
            self._idle.append(process)

    def _hand(self, process: _Process, waiter: asyncio.Future[_Process]) -> None:
        if waiter.done():  # cancelled meanwhile: to the next one, or idle
            self._release(process)
        else:
            waiter.set_result(process)

    def _died(self, process: _Process) -> None:
        process.proc.join(0)  # reaped now if it is gone already
        with self._lock:
            if process in self._all:
                self._all.remove(process)
            while self._waiting:  # a new process for the next call in line
                loop, waiter = self._waiting.popleft()
                if not waiter.done():
                    loop.call_soon_threadsafe(self._replace, waiter)
                    return

    def _replace(self, waiter: asyncio.Future[_Process]) -> None:
        with self._lock:
            if waiter.done():
                return
            if self._closed:
                waiter.set_exception(RuntimeError("the process pool is shut down"))
                return
            try:
                process = _Process(self.ctx, self.initializer, self.initargs)
            except Exception as exc:
                waiter.set_exception(exc)
                return
            self._all.append(process)
        waiter.set_result(process)

    def shutdown(self, timeout: float = 30.0) -> None:
        """Queued calls are cancelled; each process finishes its current call and ends."""
        with self._lock:
            self._closed = True
            processes, self._all, self._idle = self._all, [], []
            waiting, self._waiting = list(self._waiting), collections.deque()
        for loop, waiter in waiting:
            with contextlib.suppress(RuntimeError):  # its loop is closed already
                loop.call_soon_threadsafe(waiter.cancel)
        for process in processes:
            process.close()
        for process in processes:
            process.proc.join(timeout)
            if process.proc.is_alive():
                process.proc.kill()
                process.proc.join()


# --- in the pool process -----------------------------------------------------------------------


def _read_exact(fd: int, n: int) -> bytes | None:
    parts, got = [], 0
    while got < n:
        chunk = os.read(fd, n - got)
        if not chunk:
            return None
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def context_spec(factory: Callable[..., Any], *args: Any) -> bytes:
    """What `run_in_context` takes: `factory` (top-level) and its picklable arguments, pickled
    once by the caller (a process makes one object per distinct spec)."""
    return pickle.dumps((factory, args), protocol=5)


def _serve(req: Connection, res: Connection, initializer: Callable[..., None] | None,
           initargs: tuple[Any, ...]) -> None:
    """Run calls until the worker closes the request pipe (or is gone)."""
    if initializer is not None:
        initializer(*initargs)
    made: dict[bytes, Any] = {}  # context spec -> what it made, in this process
    try:
        _serve_calls(req.fileno(), res.fileno(), made)
    finally:
        for value in made.values():
            close = getattr(value, "close", None)
            if close is not None:
                close()


def _serve_calls(rfd: int, wfd: int, made: dict[bytes, Any]) -> None:
    while True:
        head = _read_exact(rfd, _LEN.size)
        body = None if head is None else _read_exact(rfd, _LEN.unpack(head)[0])
        if body is None:
            return
        try:
            func, args, context = pickle.loads(body)  # noqa: S301 - from our worker
            if context is not None:
                value = made.get(context)
                if value is None:
                    factory, fargs = pickle.loads(context)  # noqa: S301 - from our worker
                    value = made[context] = factory(*fargs)
                args = (value, *args)
            reply = pickle.dumps((True, func(*args)), protocol=5)
        except BaseException as exc:  # noqa: BLE001 - the caller gets it, as with an executor
            reply = _error(exc)
        frame = memoryview(_LEN.pack(len(reply)) + reply)
        try:
            while frame:
                frame = frame[os.write(wfd, frame):]
        except OSError:  # the worker is gone or shutting down
            return


def _error(exc: BaseException) -> bytes:
    """The exception, with this process's traceback as a note (it shows in the worker's log)."""
    text = "".join(traceback.format_exception(exc))
    try:
        exc.add_note(f"in pool process {os.getpid()}:\n{text}")
        return pickle.dumps((False, exc), protocol=5)
    except Exception:  # an exception that does not pickle
        return pickle.dumps((False, RuntimeError(f"{type(exc).__name__}: {exc}\n{text}")),
                            protocol=5)
