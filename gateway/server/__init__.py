"""`mssgw serve`: the process model.

A supervisor process starts `[gateway] workers` worker processes (0: one per core). Each worker
runs its own asyncio loop, continues the supervisor's root (`gateway.runtime.Runtime`) with
storage of its own, and starts every entry of SERVICES on SO_REUSEPORT listeners: the kernel
spreads new connections across the workers' sockets, so every core accepts and serves mail with
no shared accept lock and no hand-off between processes. Storage is shared on disk (Maildir,
queue files, SQLite in WAL mode), which is why any worker may take any session.

The supervisor logs one line per listener (from the first worker that is ready), restarts a
worker that dies (with a pause if workers die young, so a broken configuration does not spin),
and on SIGTERM/SIGINT asks every worker to stop (listeners close, sessions in progress get a
grace period) and waits for them.

Ports given as 0 in the configuration are resolved once by the supervisor (a bound, non-listening
SO_REUSEPORT socket holds the port), so that every worker listens on the same ephemeral port.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import multiprocessing
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Protocol

from gateway import maillog, malloc, metrics, systemd
from gateway.config import Config, parse_hostport
from gateway.errors import GatewayError
from gateway.http import service as http_service
from gateway.imap import service as imap_service
from gateway.pki import crlhttp
from gateway.pki import service as pki_service
from gateway.runtime import Runtime
from gateway.server.loop import WorkerLoop, raise_open_files_limit
from gateway.smtp import outbound
from gateway.smtp import service as smtp_service

log = logging.getLogger("mssgw.server")


class Listener(Protocol):
    """What a worker needs of a listener: an asyncio.Server, or the HTTPS listener."""

    @property
    def sockets(self) -> Sequence[socket.socket]: ...

    def close(self) -> None: ...


class StartServers(Protocol):
    def __call__(self, runtime: Runtime, *, reuse_port: bool) -> Awaitable[Sequence[Listener]]:
        ...


StartTask = Callable[[Runtime], Awaitable["asyncio.Task[Any]"]]


@dataclass(frozen=True)
class Service:
    """Listeners every worker starts (`start`), and what the supervisor makes for all the
    workers before it forks (`prepare`, e.g. TLS contexts sharing one session-ticket key)."""

    name: str
    start: StartServers
    prepare: Callable[[Runtime], None] | None = None


# Started in every worker process, on SO_REUSEPORT listeners.
SERVICES: tuple[Service, ...] = (
    Service("smtp", smtp_service.start, smtp_service.prepare),
    Service("imap", imap_service.start, imap_service.prepare),
    Service("https", http_service.start, http_service.prepare),
    Service("crl", crlhttp.start),  # the CRL distribution point (plain HTTP), when configured
)

# Started in the first worker only (work that must not run once per core): the outbound queue
# runner, the CRL refresh.
SINGLETONS: tuple[StartTask, ...] = (
    outbound.start,
    pki_service.start,
    pki_service.fetch_external,
)

# Started in every worker, after its SERVICES (upkeep of what each worker holds, e.g. the CRLs
# in its TLS contexts).
WORKER_TASKS: tuple[StartTask, ...] = (
    pki_service.keep_loaded,
    imap_service.rest_stores,  # idle sessions' mail stores close their SQLite connections
)

GRACE_SECONDS = 10.0  # how long sessions in progress may finish after SIGTERM
_ZERO_PORT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[\w.-]+):0$")


class ServeError(GatewayError):
    pass


# --- ephemeral ports ---------------------------------------------------------------------------


def reserve_ephemeral_ports(config: Config) -> tuple[Config, list[socket.socket]]:
    """Replace every `HOST:0` listener address by a port the supervisor holds."""
    held: list[socket.socket] = []
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        section = getattr(config, f.name)
        if not dataclasses.is_dataclass(section):
            continue
        updates: dict[str, str] = {}
        for sf in dataclasses.fields(section):
            value = getattr(section, sf.name)
            if isinstance(value, str) and _ZERO_PORT.match(value):
                host, _ = parse_hostport(value)
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                sock = socket.socket(family, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                sock.bind((host, 0))
                held.append(sock)
                port = sock.getsockname()[1]
                shown = f"[{host}]" if family == socket.AF_INET6 else host
                updates[sf.name] = f"{shown}:{port}"
        if updates:
            changes[f.name] = dataclasses.replace(section, **updates)  # type: ignore[type-var]
    return (dataclasses.replace(config, **changes) if changes else config), held


# --- worker ------------------------------------------------------------------------------------


async def run_services(
    runtime: Runtime, *, reuse_port: bool, singletons: bool
) -> tuple[list[Listener], list[asyncio.Task[Any]]]:
    servers: list[Listener] = []
    tasks: list[asyncio.Task[Any]] = []
    try:
        for service in SERVICES:
            for server in await service.start(runtime, reuse_port=reuse_port):
                if not getattr(server, "mssgw_name", None):
                    setattr(server, "mssgw_name", service.name)  # noqa: B010
                servers.append(server)
        for start in WORKER_TASKS + (SINGLETONS if singletons else ()):
            tasks.append(await start(runtime))
    except BaseException:
        for s in servers:
            s.close()
        for t in tasks:
            t.cancel()
        raise
    return servers, tasks


def prepare_services(runtime: Runtime) -> None:
    """Call each service's `prepare(runtime)`, in the supervisor before it forks: what the
    workers should share (e.g. a TLS context, hence its session-ticket key), kept in the root
    each worker continues from (`Runtime.in_child`). Only an optimisation: a failure is left
    for the workers to report as they start."""
    for service in SERVICES:
        try:
            if service.prepare is not None:
                service.prepare(runtime)
        except Exception as exc:  # the worker meets it again and reports it
            log.debug("prepare for %s failed: %s", service.name, exc)


def listeners(servers: Sequence[Listener]) -> list[tuple[str, str, int]]:
    out = []
    for s in servers:
        for sock in s.sockets:
            host, port = sock.getsockname()[:2]
            out.append((str(getattr(s, "mssgw_name", "service")), str(host), int(port)))
    return out


async def _worker(runtime: Runtime, index: int, conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        servers, tasks = await run_services(runtime, reuse_port=True, singletons=index == 0)
    except Exception as exc:
        # When every worker fails (a busy port), the supervisor stops at the first error and
        # may be gone before the others report: that is no traceback of theirs to show.
        with contextlib.suppress(OSError):
            conn.send(("error", _describe(exc)))
        return
    try:
        conn.send(("ready", listeners(servers)))
    except OSError:  # the supervisor is gone (it stopped on another worker's error)
        stop.set()
    # Everything loaded so far (modules, configuration, caches) lives as long as the worker:
    # out of the collector's sight, a full collection no longer walks it. Sessions allocate
    # enough cyclic objects (protocol <-> transport) to trigger collections often.
    gc.collect()
    gc.freeze()
    malloc.trim()  # what starting freed (imports, the TLS contexts' loading) goes back
    watchdog = asyncio.create_task(_orphan_watch(stop))
    await stop.wait()
    watchdog.cancel()
    for s in servers:
        s.close()
    for t in tasks:
        t.cancel()
    # Sessions in progress (a DATA being stored) may finish; then the process ends.
    deadline = time.monotonic() + GRACE_SECONDS
    current = asyncio.current_task()
    while time.monotonic() < deadline:
        pending = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        if not pending:
            break
        await asyncio.sleep(0.05)


async def _orphan_watch(stop: asyncio.Event) -> None:
    """A worker whose supervisor died (SIGKILL, crash) stops instead of serving on unsupervised."""
    parent = os.getppid()
    while os.getppid() == parent:
        await asyncio.sleep(1.0)
    log.warning("the supervisor (pid %d) is gone; stopping", parent)
    stop.set()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"cannot listen: {exc.strerror}"
    if isinstance(exc, GatewayError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def worker_main(supervisor: Runtime, index: int, conn: Connection) -> None:
    """A worker process (forked): its root continues the supervisor's (same configuration,
    authentication secret and TLS contexts) with storage of its own, closed when it ends (the
    pipeline's pool processes with it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides; SIGTERM stops us
    _logging()
    maillog.configure_from(supervisor.config)
    try:
        runtime = supervisor.in_child()
    except Exception as exc:  # storage that cannot be opened: said once, by the supervisor
        with contextlib.suppress(OSError):
            conn.send(("error", _describe(exc)))
        return
    try:
        with asyncio.Runner(loop_factory=WorkerLoop) as runner:
            runner.run(_worker(runtime, index, conn))
    except Exception as exc:
        # multiprocessing would print a traceback; a worker that fails says one line (the
        # supervisor restarts it, or has stopped: a pipe to it may be closed already).
        log.error("worker %d stopped: %s: %s", index, type(exc).__name__, exc)
        raise SystemExit(1) from None
    finally:
        with contextlib.suppress(Exception):
            runtime.close()


# --- supervisor --------------------------------------------------------------------------------


def _logging() -> None:
    # Every accepted message logs a line: skip collecting what the format does not show (the
    # caller's source line, thread and multiprocessing names), as the logging HOWTO's
    # "Optimization" section suggests.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logMultiprocessing = False
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(process)d %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


def worker_count(config: Config) -> int:
    return config.gateway.workers if config.gateway.workers > 0 else (os.cpu_count() or 1)


class Supervisor:
    def __init__(self, config: Config) -> None:
        # The supervisor's root opens no storage: it holds what the workers inherit (the
        # authentication cache's secret, so they share verified logins; the TLS contexts).
        self.runtime = Runtime(config)
        self.config = config
        self.n = worker_count(config)
        self.ctx = multiprocessing.get_context("fork")
        self.procs: dict[int, multiprocessing.process.BaseProcess] = {}
        self.pipes: dict[int, Connection] = {}
        self.started: dict[int, float] = {}
        self.stopping = False
        self.announced = False
        self.watchdog: systemd.Watchdog | None = None  # when systemd asks for one
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    def _signal(self, signum: int, frame: Any) -> None:
        self.stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def spawn(self, index: int) -> None:
        parent, child = self.ctx.Pipe(duplex=False)
        proc = self.ctx.Process(
            target=worker_main, args=(self.runtime, index, child), name=f"mssgw-worker-{index}",
            daemon=False,
        )
        proc.start()
        child.close()
        self.procs[index] = proc
        self.pipes[index] = parent
        self.started[index] = time.monotonic()

    def announce(self, items: list[tuple[str, str, int]]) -> None:
        for name, host, port in items:
            shown = f"[{host}]" if ":" in host else host
            log.info("listening: %s on %s:%d", name, shown, port)
        log.info("gateway %s: %d worker process(es) ready", self.config.gateway.domain, self.n)
        print(client_help(self.config, items), file=sys.stderr, flush=True)
        self.announced = True
        malloc.trim()  # the supervisor keeps little of what it loaded to start the workers
        systemd.notify("READY=1", f"STATUS=serving {self.config.gateway.domain}")
        interval = systemd.watchdog_interval()
        if interval is not None:
            self.watchdog = systemd.Watchdog(self.config, interval)

    def clean_maildirs(self, before: float) -> None:
        from gateway.store.maildir import clean_tmp

        removed = clean_tmp(self.config.mailboxes_path, before)
        if removed:
            log.info("removed %d unfinished file(s) from the Maildirs' tmp/", removed)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._signal)
        signal.signal(signal.SIGINT, self._signal)
        from gateway.store.maildir import STALE_TMP_SECONDS

        # Files a killed writer left in tmp/: all of them now, before any worker writes; then
        # those older than 36 hours, hourly (Maildir's rule).
        self.clean_maildirs(time.time())
        next_clean = time.monotonic() + 3600
        prepare_services(self.runtime)
        for i in range(self.n):
            self.spawn(i)
        quick_deaths = 0
        try:
            while not self.stopping:
                if time.monotonic() > next_clean:
                    self.clean_maildirs(time.time() - STALE_TMP_SECONDS)
                    next_clean = time.monotonic() + 3600
                sentinels: dict[Any, int] = {p.sentinel: i for i, p in self.procs.items()}
                readers: dict[Any, int] = {c: i for i, c in self.pipes.items()}
                timeout = min(5.0, self.watchdog.wait()) if self.watchdog else 5.0
                ready = wait([*sentinels, *readers, self._wake_r], timeout=timeout)
                for obj in ready:
                    if obj in readers:
                        i = readers[obj]
                        try:
                            kind, payload = self.pipes[i].recv()
                        except (EOFError, OSError):
                            self.pipes.pop(i, None)
                            continue
                        if kind == "error":
                            log.error("worker %d could not start: %s", i, payload)
                            print(f"mssgw: error: {payload}", file=sys.stderr)
                            self.stopping = True
                            return_code = 1
                            self._stop_all()
                            return return_code
                        if kind == "ready" and not self.announced:
                            self.announce(payload)
                for obj in ready:
                    if obj in sentinels and not self.stopping:
                        i = sentinels[obj]
                        proc = self.procs[i]
                        proc.join()
                        if proc.pid is not None:
                            metrics.process_gone(proc.pid)
                        lived = time.monotonic() - self.started[i]
                        log.warning("worker %d (pid %s) died (exit %s) after %.1f s; restarting",
                                    i, proc.pid, proc.exitcode, lived)
                        quick_deaths = quick_deaths + 1 if lived < 5 else 0
                        if quick_deaths > 3:
                            time.sleep(min(10.0, 0.5 * quick_deaths))
                        self.pipes.pop(i, None)
                        self.spawn(i)
                if self.watchdog is not None and not self.stopping:
                    self.watchdog.tick()
        finally:
            systemd.notify("STOPPING=1")
            self._stop_all()
        log.info("gateway stopped")
        return 0

    def _stop_all(self) -> None:
        for p in self.procs.values():
            if p.is_alive() and p.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + GRACE_SECONDS + 5
        for p in self.procs.values():
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive() and p.pid is not None:
                log.warning("worker pid %s did not stop in time; killing it", p.pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGKILL)
                p.join()
        self.procs.clear()


def client_help(config: Config, items: list[tuple[str, str, int]]) -> str:
    ports = {name: port for name, _, port in items}
    host = items[0][1] if items else "127.0.0.1"
    lines = ["", "Point a mail client at this gateway:"]
    if "smtp submission" in ports:
        lines.append(
            f"  outgoing (SMTP): server {host}, port {ports['smtp submission']}, STARTTLS"
            + (f" (or port {ports['smtp submission-tls']}, SSL/TLS)"
               if "smtp submission-tls" in ports else "")
            + ", normal password; user name = the full mail address"
        )
    imap = [(n, p) for n, p in ports.items() if n.startswith("imap")]
    if imap:
        shown = ", ".join(f"{p} ({n.removeprefix('imap').strip() or 'imap'})" for n, p in imap)
        lines.append(f"  incoming (IMAP): server {host}, port {shown}; same user name and password")
    lines.append(
        f"  trust the gateway's CA (certs/ca/root.pem under {config.home}) or accept its "
        "certificate once; `mssgw init --demo` printed the demo addresses and passwords"
    )
    return "\n".join(lines) + "\n"


def serve(config: Config) -> int:
    _logging()
    raise_open_files_limit()  # before the workers fork: they inherit it
    # Before anything counts: every process of this gateway writes its metrics there.
    metrics.enable_multiprocess(config.metrics_path)
    try:
        maillog.configure_from(config)  # here first: a mail log that cannot be opened stops us
    except OSError as exc:
        raise ServeError(f"cannot open the mail log {config.log.mail}: {exc.strerror}") from None
    config, held = reserve_ephemeral_ports(config)
    try:
        return Supervisor(config).run()
    finally:
        for s in held:
            s.close()
