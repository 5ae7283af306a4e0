"""Doctor → patient prescriptions per second through `mssgw serve`, with p50/p99 latency.

A temporary gateway (`mssgw init --demo`, drug reference from ../shared/bdpm when present) is
served by `mssgw serve` (every core: one worker per core, each with its process pool) on
loopback ports. Client threads, each with one TLS submission session logged in as the demo
doctor, send mail-form prescriptions to the demo patient for a fixed time. Latency is measured
from the DATA command to its 250 reply: the gateway answers only after the whole flow ran
(form → CDA, PDF, signature, registry + DMP in one commit) and both deliveries (patient and
doctor) are on disk. Bounded: about 15 s of load after set-up.
"""

from __future__ import annotations

import os
import smtplib
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import make_msgid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backend import database, database_bytes, database_cpu, label  # noqa: E402

from gateway.cli import main as cli  # noqa: E402
from gateway.config import load_config  # noqa: E402

PASSWORD = "bench password for the demo"
DOMAIN = "bench.localhost"
DOCTOR = f"dr.martin@{DOMAIN}"
PATIENT = f"279035121518989@patient.{DOMAIN}"
FORM = (
    "Patient : INS 279035121518989\n"
    "1. CIS 60234100 ; 1 comprimé 3 fois par jour pendant 5 jours ; 2 boîtes\n"
    "2. CIS 65143010 ; 1 comprimé le matin pendant 30 jours ; 1 boîte ; à renouveler 1 fois\n"
)
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "16"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "15"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def setup(home: Path, storage: str = "") -> tuple[Path, int]:
    port = free_port()
    shared = Path(os.environ.get("MSSGW_SHARED", ROOT.parent / "shared"))
    cfg = home / "config.toml"
    cfg.write_text(
        f'[gateway]\ndomain = "{DOMAIN}"\nhostname = "mx.{DOMAIN}"\nworkers = 0\n'
        f'[pki]\nca_key_bits = 2048\n'
        f'[smtp]\nsubmission = "127.0.0.1:{port}"\nsubmission_tls = ""\nrelay = ""\n'
        "rate_limit_client = 0\nrate_limit_account = 0\n"
        '[imap]\nstarttls = ""\ntls = ""\n'
        + storage
    )
    with open(os.devnull, "w") as null:
        stdout, sys.stdout = sys.stdout, null
        try:
            assert cli(["init", "--demo", "--config", str(cfg)]) == 0
        finally:
            sys.stdout = stdout
    from gateway.directory import open_directory

    open_directory(load_config(cfg), actor="bench").set_password(DOCTOR, PASSWORD)
    if (shared / "bdpm").is_dir():
        from gateway.db import connect
        from gateway.drugs.store import import_directory

        conn = connect(load_config(cfg).database_path)
        import_directory(conn, shared / "bdpm")
        conn.close()
    return cfg, port


def _template() -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = DOCTOR, PATIENT, "Ordonnance"
    msg["Message-ID"] = "<MESSAGE-ID>"
    msg.set_content(FORM)
    return msg.as_bytes(policy=SMTP)


TEMPLATE = _template()


def message() -> bytes:
    """The doctor's mail: built once, each copy with its own Message-ID (the gateway registers
    a retried message once, by Message-ID). The client shares the 2 cores with the server, so
    it does not re-run the email package for every message."""
    return TEMPLATE.replace(b"<MESSAGE-ID>", make_msgid(domain="bench.client").encode())


def client(port: int, ctx: ssl.SSLContext, stop: float, out: list[float],
           errors: list[str]) -> None:
    s = smtplib.SMTP("127.0.0.1", port, timeout=120)
    s.starttls(context=ctx)
    s.login(DOCTOR, PASSWORD)
    try:
        while time.perf_counter() < stop:
            s.mail(DOCTOR)
            s.rcpt(PATIENT)
            data = message()
            t0 = time.perf_counter()
            code, reply = s.data(data)
            if code == 250:
                out.append(time.perf_counter() - t0)
            else:
                errors.append(f"{code} {reply.decode(errors='replace')}")
    finally:
        s.quit()


def process_cpu(pid: int) -> dict[str, float]:
    """CPU seconds used so far by the server's processes, by role: the supervisor, its workers
    (event loops: SMTP, TLS, storage) and the workers' children (the process pools)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {"supervisor": 0.0, "workers": 0.0, "pools": 0.0}
    todo = [(pid, 0)]
    while todo:
        p, depth = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        role = ("supervisor", "workers", "pools")[min(depth, 2)]
        out[role] += (int(fields[11]) + int(fields[12])) / tick
        todo += [(int(c), depth + 1) for c in children]
    return out


def wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"mssgw serve exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("mssgw serve did not open its port")


def main() -> int:
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp, database() as storage:
        cfg, port = setup(Path(tmp), storage)
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config", str(cfg)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        try:
            wait_port(port, proc)
            ctx = ssl.create_default_context(cafile=str(Path(tmp) / "certs/ca/root.pem"))
            ctx.check_hostname = False
            warm: list[float] = []
            errors: list[str] = []
            warm_threads = [threading.Thread(target=client, args=(
                port, ctx, time.perf_counter() + 3, warm, errors)) for _ in range(4)]
            for t in warm_threads:
                t.start()
            for t in warm_threads:
                t.join()
            done: list[float] = []
            cpu_before = process_cpu(proc.pid)
            db_before = database_cpu()
            bytes_before = database_bytes()
            client_before = time.process_time()
            start = time.perf_counter()
            threads = [threading.Thread(target=client, args=(
                port, ctx, start + SECONDS, done, errors)) for _ in range(CLIENTS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - start
            client_cpu = time.process_time() - client_before
            cpu_after = process_cpu(proc.pid)
            db_cpu = database_cpu() - db_before
            bytes_after = database_bytes()
        finally:
            proc.terminate()
            proc.wait(30)
    if not done:
        print(f"no prescription completed; errors: {errors[:3]}")
        return 1
    done.sort()
    p99 = done[min(len(done) - 1, int(len(done) * 0.99))]
    cores = os.cpu_count() or 1
    print(f"storage: {label()}")
    print(f"doctor → patient prescriptions: {len(done) / elapsed:,.1f}/s"
          f" ({len(done)} in {elapsed:.1f} s, {CLIENTS} clients, {cores} cores)")
    print(f"latency DATA → 250 (both deliveries and DMP filing done):"
          f" p50 {statistics.median(done) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms")
    n = len(done)
    cpu = {k: (cpu_after[k] - cpu_before[k]) * 1000 / n for k in cpu_after}
    print(f"CPU per prescription: server {sum(cpu.values()):.1f} ms (workers {cpu['workers']:.1f},"
          f" pools {cpu['pools']:.1f}, supervisor {cpu['supervisor']:.1f}),"
          f" bench client {client_cpu * 1000 / n:.1f} ms"
          + (f", PostgreSQL server {db_cpu * 1000 / n:.1f} ms" if db_cpu else ""))
    if bytes_after[0]:
        wal, size = (after - before for after, before in zip(bytes_after, bytes_before,
                                                              strict=True))
        print(f"PostgreSQL per prescription: {wal / n / 1024:.0f} KB of WAL,"
              f" {size / n / 1024:.0f} KB more on disk")
    if errors:
        print(f"errors: {len(errors)} (first: {errors[0]})")
    load = os.getloadavg()[0]
    if load_before > 0.5:
        print(f"note: the machine was shared (load average {load_before:.1f} before the run,"
              f" {load:.1f} after): figures are lower than on an idle machine")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
