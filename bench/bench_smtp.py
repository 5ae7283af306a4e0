"""SMTP acceptance throughput: 2 KB messages over 20 concurrent sessions, durably stored.

Starts `mssgw serve` (one worker per core) on a fresh gateway in a temporary folder, then drives
the submission port (STARTTLS + AUTH PLAIN, as a mail client does; MAIL, RCPT and DATA grouped
when the server offers PIPELINING, as MTAs and most mail libraries do) from client processes:
- many messages per connection (20 sessions, each sending messages back to back);
- one message per connection (20 concurrent clients: connect, TLS, AUTH, one message, QUIT).
Prints accepted-and-stored messages/s (every 250 is checked against the files in the Maildir),
the p50/p99 latency from the end of DATA to the 250 and the server's CPU per message: first for
the transport alone (the benchmark's server runs with no pipeline step), then with the configured
pipeline steps (the document flows, which look at every message in the process pool).

The clients run on the same machine and share its cores with the server: figures are indicative
(they also move with whatever else the machine is doing).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import multiprocessing
import os
import re
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from backend import database, database_cpu, messages_in
from backend import label as backend_label

ROOT = Path(__file__).resolve().parent.parent
SESSIONS = 20
DURATION = float(os.environ.get("BENCH_SECONDS", "8"))
PASSWORD = "bench password 123456"
SENDER = "dr.martin@bench.localhost"
RCPT = "ph.durand@bench.localhost"


def body() -> bytes:
    head = (
        f"From: <{SENDER}>\r\nTo: <{RCPT}>\r\nSubject: bench\r\n"
        "Message-ID: <{n}@bench.client>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
    )
    line = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n"
    text = head + line * ((2048 - len(head)) // len(line) + 1)
    return text.encode()[:2046] + b"\r\n"


async def reply(reader: asyncio.StreamReader) -> bytes:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("server closed the connection")
        if line[3:4] != b"-":
            return line


async def command(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cmd: bytes,
                  expect: bytes) -> bytes:
    writer.write(cmd + b"\r\n")
    line = await reply(reader)
    if not line.startswith(expect):
        raise RuntimeError(f"{cmd!r}: {line!r}")
    return line


async def ehlo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """EHLO; True when the server offers PIPELINING."""
    writer.write(b"EHLO bench.client\r\n")
    pipelining = False
    while True:
        line = await reader.readline()
        if not line.startswith(b"250"):
            raise RuntimeError(f"EHLO: {line!r}")
        pipelining = pipelining or line[4:].strip().upper() == b"PIPELINING"
        if line[3:4] != b"-":
            return pipelining


async def open_session(port: int, ctx: ssl.SSLContext) -> tuple[asyncio.StreamReader,
                                                                asyncio.StreamWriter, bool]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reply(reader)
    await ehlo(reader, writer)
    await command(reader, writer, b"STARTTLS", b"220")
    await writer.start_tls(ctx)
    pipelining = await ehlo(reader, writer)
    auth = base64.b64encode(f"\0{SENDER}\0{PASSWORD}".encode())
    await command(reader, writer, b"AUTH PLAIN " + auth, b"235")
    return reader, writer, pipelining


ENVELOPE = f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{RCPT}>\r\nDATA\r\n".encode()


async def send_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes,
                   latencies: list[float], pipelining: bool) -> None:
    if pipelining:  # RFC 2920: MAIL, RCPT and DATA in one group, then the three replies
        writer.write(ENVELOPE)
        for expect in (b"250", b"250", b"354"):
            line = await reply(reader)
            if not line.startswith(expect):
                raise RuntimeError(f"envelope: {line!r}")
    else:
        await command(reader, writer, f"MAIL FROM:<{SENDER}>".encode(), b"250")
        await command(reader, writer, f"RCPT TO:<{RCPT}>".encode(), b"250")
        await command(reader, writer, b"DATA", b"354")
    writer.write(data + b".\r\n")
    t0 = time.perf_counter()
    line = await reply(reader)
    if not line.startswith(b"250"):
        raise RuntimeError(f"DATA: {line!r}")
    latencies.append(time.perf_counter() - t0)


async def client(port: int, cafile: str, sessions: int, per_connection: bool,
                 deadline: float) -> tuple[int, list[float], int]:
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = False
    data = body()
    latencies: list[float] = []
    errors = 0

    async def many() -> None:
        nonlocal errors
        reader, writer, pipelining = await open_session(port, ctx)
        while time.time() < deadline:
            try:
                await send_one(reader, writer, data, latencies, pipelining)
            except (OSError, RuntimeError, ConnectionError):
                errors += 1
                return
        writer.close()

    async def single() -> None:
        nonlocal errors
        while time.time() < deadline:
            try:
                reader, writer, pipelining = await open_session(port, ctx)
                await send_one(reader, writer, data, latencies, pipelining)
                writer.write(b"QUIT\r\n")
                writer.close()
            except (OSError, RuntimeError, ConnectionError, ssl.SSLError):
                errors += 1

    await asyncio.gather(*[(single() if per_connection else many()) for _ in range(sessions)])
    return len(latencies), latencies, errors


def client_process(args: tuple[int, str, int, bool, float]) -> tuple[int, list[float], int,
                                                                    float]:
    cpu = time.process_time()
    accepted, latencies, errors = asyncio.run(client(*args))
    return accepted, latencies, errors, time.process_time() - cpu


def count_stored(home: Path) -> int:
    return messages_in(home / "config.toml", RCPT)


def server_cpu(pid: int) -> float:
    """CPU seconds used so far by the server's processes (supervisor, workers, their pools)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
        todo += [int(c) for c in children]
    return total


def run_mode(port: int, home: Path, per_connection: bool, procs: int, pid: int) -> None:
    cafile = str(home / "certs" / "ca" / "root.pem")
    before = count_stored(home)
    cpu_before = server_cpu(pid)
    db_before = database_cpu()
    start = time.time() + 0.5
    deadline = start + DURATION
    per_proc = SESSIONS // procs
    with multiprocessing.get_context("fork").Pool(procs) as pool:
        results = pool.map(client_process,
                           [(port, cafile, per_proc, per_connection, deadline)] * procs)
    elapsed = time.time() - start
    db_cpu = database_cpu() - db_before
    cpu = server_cpu(pid) - cpu_before + db_cpu
    accepted = sum(r[0] for r in results)
    client_cpu = sum(r[3] for r in results)
    errors = sum(r[2] for r in results)
    lat = sorted(x for r in results for x in r[1])
    stored = count_stored(home) - before
    assert stored >= accepted, f"{accepted} accepted but only {stored} stored"
    label = "one message per connection" if per_connection else "many messages per connection"
    p50 = lat[len(lat) // 2] * 1000 if lat else float("nan")
    p99 = lat[int(len(lat) * 0.99)] * 1000 if lat else float("nan")
    print(f"{label:32s} {accepted / elapsed:8.0f} msg/s accepted and stored "
          f"({accepted} in {elapsed:.1f} s, {errors} errors)  "
          f"latency p50 {p50:.1f} ms  p99 {p99:.1f} ms; "
          f"server CPU {cpu * 1e6 / max(accepted, 1):.0f} us/message "
          f"(clients {client_cpu * 1e6 / max(accepted, 1):.0f}"
          + (f"; PostgreSQL's share {db_cpu * 1e6 / max(accepted, 1):.0f}" if db_cpu else "")
          + ")", flush=True)


def setup(home: Path, workers: int, storage: str = "") -> None:
    (home / "config.toml").write_text(
        '[gateway]\ndomain = "bench.localhost"\nhostname = "mx.bench.localhost"\n'
        f"workers = {workers}\n"
        '[smtp]\nsubmission = "127.0.0.1:0"\nsubmission_tls = ""\nrelay = ""\n'
        "rate_limit_client = 0\nrate_limit_account = 0\n" + storage
    )
    env = {**os.environ, "MSSGW_CONFIG": str(home / "config.toml")}
    mssgw = [sys.executable, "-m", "gateway"]
    subprocess.run([*mssgw, "init", "--demo"], check=True, env=env, stdout=subprocess.DEVNULL)
    for who in (SENDER, RCPT):
        subprocess.run([*mssgw, "directory", "set-password", who], input=PASSWORD.encode(),
                       check=True, env=env, stdout=subprocess.DEVNULL)


def serve_and_run(home: Path, clients: int, *, keep_steps: bool, modes: list[bool]) -> bool:
    launcher = (
        "import sys\n"
        # Transport only: the roots this process builds give their pipeline no step.
        + ("" if keep_steps else "from gateway.flows import steps\nsteps.STEPS = ()\n")
        + "from gateway.cli import main\n"
        "sys.exit(main(['serve', '--config', sys.argv[1]]))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", launcher, str(home / "config.toml")],
        stderr=subprocess.PIPE, start_new_session=True, cwd=home,
    )
    try:
        assert proc.stderr is not None
        port = 0
        for raw in proc.stderr:
            m = re.search(rb"smtp submission on 127\.0\.0\.1:(\d+)", raw)
            if m:
                port = int(m.group(1))
            if b"ready" in raw:
                break
        if not port:
            print("the server did not start")
            return False
        threading.Thread(target=proc.stderr.read, daemon=True).start()
        for per_connection in modes:
            run_mode(port, home, per_connection=per_connection, procs=clients, pid=proc.pid)
        return True
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=0, help="server workers (0: per core)")
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--mode", choices=("many", "one", "both"), default="both",
                        help="many messages per connection, one per connection, or both")
    parser.add_argument("--transport-only", action="store_true",
                        help="skip the second run with the pipeline steps")
    parser.epilog = f"BENCH_SECONDS sets the length of each run (now {DURATION:g} s)."
    args = parser.parse_args()
    modes = {"many": [False], "one": [True], "both": [False, True]}[args.mode]
    with tempfile.TemporaryDirectory(prefix="mssgw-bench-", dir=ROOT / "var"
                                     if (ROOT / "var").is_dir() else None) as tmp, \
            database() as storage:
        home = Path(tmp)
        setup(home, args.workers, storage)
        print(f"storage: {backend_label()}", flush=True)
        from gateway.flows.steps import STEPS

        print(f"server: {os.cpu_count()} core(s), workers: {args.workers or 'one per core'}; "
              f"{SESSIONS} sessions from {args.clients} client process(es); 2 KB messages "
              "doctor -> pharmacist; fsync before every 250", flush=True)
        # First the transport alone (pipeline steps emptied in the benchmark's server only),
        # then with the configured steps, whose document work runs in the process pool.
        for label, keep in (("transport only (no pipeline step)", False),
                            ("with pipeline steps: "
                             + ", ".join(f"{s.__module__}.{s.__name__}" for s in STEPS), True)):
            if keep and (args.transport_only or not STEPS):
                break
            print(f"-- {label}", flush=True)
            if not serve_and_run(home, args.clients, keep_steps=keep, modes=modes):
                return 1
    print("(indicative: clients and server share this machine's cores)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
