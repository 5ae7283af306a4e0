"""IMAP figures: commands/s for 20 concurrent clients on a mixed workload, memory for 1,000 idle
connections (and the CPU they take once each has sent NOTIFY), SELECT + FETCH 1:* (FLAGS) on a
100,000-message mailbox.

The server runs as in `mssgw serve`: worker processes (one per core) each listening with
SO_REUSEPORT on the same implicit-TLS port, logins through the directory's authenticator. The
clients are minimal asyncio IMAP clients in this process (they share the machine's cores with the
server, so the figures are a floor). Like Thunderbird, Apple Mail or Outlook, each client resumes
its TLS session when it reconnects; the mixed workload is also run with a full handshake for every
connection (the worst case: clients that never resume). Bounded: about 50 seconds in all
(BENCH_SECONDS sets each mixed run, 6 by default). Loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import multiprocessing
import os
import re
import socket
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend import BACKEND, database, label  # noqa: E402

from gateway.cli import main as cli  # noqa: E402
from gateway.config import Config, load_config  # noqa: E402
from gateway.pki.tls import client_context  # noqa: E402
from gateway.store.maildir import deliver, mailbox_path  # noqa: E402
from gateway.store.mailstore import MailStore  # noqa: E402

CLIENTS = 20
MIXED_SECONDS = float(os.environ.get("BENCH_SECONDS", "6"))
IDLE_CONNECTIONS = 1000
NOTIFY_SECONDS = 4.0  # how long the idle connections are watched, without and with NOTIFY
BIG = 100_000
PASSWORD = "bench-password-123"  # noqa: S105


def message(i: int, size: int = 2000) -> bytes:
    body = f"Ligne de texte de l'ordonnance numéro {i}.\r\n" * (size // 45)
    return (
        f"From: Dr Martin <martin@bench.localhost>\r\nTo: user@bench.localhost\r\n"
        f"Subject: Message {i}\r\nDate: Mon, 2 Feb 2026 10:00:00 +0100\r\n"
        f"Message-ID: <{i}@bench>\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}"
    ).encode()


def users(n: int) -> list[str]:
    return [f"user{i}@bench.localhost" for i in range(n)]


def make_home(tmp: Path, storage: str = "") -> Config:
    home = tmp / "gw"
    home.mkdir()
    (home / "config.toml").write_text(
        '[gateway]\ndomain = "bench.localhost"\nhostname = "mx.bench.localhost"\n' + storage
    )
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli(["init", "--config", str(home / "config.toml")]) == 0
    return load_config(home / "config.toml")


def register(config: Config, addresses: list[str]) -> None:
    """Mailboxes with passwords in the real directory (scrypt: logins go through its cache)."""
    from gateway.directory import open_directory
    from gateway.directory.model import Application

    directory = open_directory(config, actor="bench")
    for address in addresses:
        directory.add_application(address, Application(name=address.split("@")[0]))
        directory.set_password(address, PASSWORD)


def worker(supervisor: Any, ready: multiprocessing.synchronize.Event) -> None:  # type: ignore[name-defined]
    """A forked IMAP worker, as `mssgw serve`'s: its root continues the supervisor's."""
    from gateway.imap.service import start

    runtime = supervisor.in_child()

    async def run() -> None:
        await start(runtime, reuse_port=True)
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(run())


_LITERAL = re.compile(rb"\{(\d+)\}\r\n\Z")


class ResumingContext(ssl.SSLContext):
    """A client's TLS context offering the session of its previous connection, as mail clients
    do (asyncio has no parameter for it, so the context supplies it to every connection)."""

    session: ssl.SSLSession | None = None

    def wrap_bio(  # type: ignore[override]
        self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO, server_side: bool = False,
        server_hostname: str | None = None, session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        return super().wrap_bio(
            incoming, outgoing, server_side, server_hostname, session or self.session
        )


def resuming_context(config: Config) -> ResumingContext:
    ctx = client_context(config, present_certificate=False)
    ctx.__class__ = ResumingContext  # the project's client settings, plus resumption
    return ctx  # type: ignore[return-value]


class Client:
    """A minimal IMAP client over TLS. It reads what has arrived and finds the lines in it,
    stepping over literals, as a client in C would: a readline() per response line costs the
    bench's shared cores more than the server's own work for that line."""

    def __init__(self) -> None:
        self.n = 0
        self.commands = 0
        self.buf = bytearray()

    async def connect(self, port: int, ctx: object) -> None:
        self.reader, self.writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=ctx, server_hostname="127.0.0.1", limit=1 << 24
        )
        await self.response(b"* ", "greeting")  # the session tickets came before it
        tls = self.writer.get_extra_info("ssl_object")
        # A resumed session stays good to resume again; reading .session copies it (Python
        # serialises and parses it again, peer certificate included: 15% of the client's work).
        if isinstance(ctx, ResumingContext) and not tls.session_reused:
            ctx.session = tls.session

    async def _more(self, what: str) -> None:
        data = await self.reader.read(1 << 20)
        if not data:
            raise EOFError(what)
        self.buf += data

    async def response(self, tag: bytes, what: str) -> list[bytes]:
        """The lines (each with its literals) up to the first one starting with `tag`."""
        buf = self.buf
        out = []
        start = pos = 0
        while True:
            nl = buf.find(b"\r\n", pos)
            if nl < 0:
                await self._more(what)
                continue
            if buf[nl - 1 : nl] == b"}":
                m = _LITERAL.search(buf, pos, nl + 2)
                if m:  # the line goes on after the literal's octets
                    pos = nl + 2 + int(m.group(1))
                    while len(buf) < pos:
                        await self._more(what)
                    continue
            line = bytes(buf[start : nl + 2])
            out.append(line)
            pos = start = nl + 2
            if line.startswith(tag):
                del buf[:start]
                return out

    async def cmd(self, text: str, literal: bytes | None = None) -> list[bytes]:
        self.n += 1
        tag = b"b%d" % self.n
        data = tag + b" " + text.encode()
        if literal is not None:
            data += b" {%d+}\r\n" % len(literal) + literal
        self.writer.write(data + b"\r\n")
        out = await self.response(tag + b" ", text)
        if not out[-1].startswith(tag + b" OK"):
            raise RuntimeError(f"{text}: {out[-1]!r}")
        self.commands += 1
        return out

    async def bulk(self, text: str) -> bytes:
        """A command whose answer has no literal, read in one piece (a mail client in C reads
        100,000 short lines far faster than line-by-line Python would)."""
        self.n += 1
        tag = b"b%d" % self.n
        self.writer.write(tag + b" " + text.encode() + b"\r\n")
        end, seen = b"\r\n" + tag + b" OK", 0
        while (i := self.buf.find(end, seen)) < 0:
            seen = max(0, len(self.buf) - len(end))
            await self._more(text)
        while (j := self.buf.find(b"\r\n", i + 2)) < 0:
            await self._more(text)
        data = bytes(self.buf[: j + 2])
        del self.buf[: j + 2]
        self.commands += 1
        return data

    def close(self) -> None:
        self.writer.close()


async def mixed(port: int, ctx: object, address: str, stop: float, counter: list[int]) -> None:
    """login, select, fetch headers and bodies, store flags, append, expunge, logout."""
    new = message(0, 3000)
    first = True
    while first or time.perf_counter() < stop:
        first = False
        c = Client()
        await c.connect(port, ctx)
        await c.cmd(f'LOGIN {address} "{PASSWORD}"')
        out = await c.cmd("SELECT INBOX")
        exists = int(next(x for x in out if x.endswith(b" EXISTS\r\n")).split()[1])
        await c.cmd("FETCH 1:* (UID FLAGS)")
        await c.cmd(f"FETCH {max(1, exists - 19)}:* (UID RFC822.SIZE ENVELOPE)")
        for seq in (exists, max(1, exists - 1), max(1, exists - 2)):
            await c.cmd(f"FETCH {seq} (BODY.PEEK[HEADER] BODY.PEEK[TEXT])")
        await c.cmd(f"STORE {exists} +FLAGS (\\Seen)")
        out = await c.cmd("APPEND INBOX", new)
        uid = re.search(rb"APPENDUID \d+ (\d+)", out[-1]).group(1).decode()  # type: ignore[union-attr]
        await c.cmd("NOOP")
        await c.cmd(f"UID STORE {uid} +FLAGS.SILENT (\\Deleted)")
        await c.cmd(f"UID EXPUNGE {uid}")
        await c.cmd("LOGOUT")
        c.close()
        counter[0] += c.commands


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def start_workers(
    config: Config, n: int
) -> tuple[list[multiprocessing.Process], int, socket.socket]:
    from gateway.imap import service
    from gateway.runtime import Runtime

    hold = socket.socket()
    hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    hold.bind(("127.0.0.1", 0))
    port = hold.getsockname()[1]
    cfg = dataclasses.replace(
        config, imap=dataclasses.replace(config.imap, starttls="", tls=f"127.0.0.1:{port}")
    )
    # As `mssgw serve` does before it forks: the workers share verified logins and the TLS
    # context (hence the session-ticket key).
    supervisor = Runtime(cfg)
    service.prepare(supervisor)
    ctx = multiprocessing.get_context("fork")
    procs = []
    for _ in range(n):
        ready = ctx.Event()
        p = ctx.Process(target=worker, args=(supervisor, ready), daemon=True)
        p.start()
        if not ready.wait(60):
            raise RuntimeError("IMAP worker did not start")
        procs.append(p)
    return procs, port, hold


def stop_workers(procs: list[multiprocessing.Process]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        p.join(10)


def big_mailbox(config: Config, address: str) -> None:
    """100,000 messages written straight into the index (one real file they all point to)."""
    root = mailbox_path(config.mailboxes_path, address)
    store = MailStore(root)
    inbox = store.folder("INBOX")
    assert inbox is not None
    path = deliver(root, message(1, 500))
    store.import_new(inbox)
    base = store.infos(inbox, [1])[1].base
    cur = root / "cur"
    now = int(time.time())
    with store.transaction():
        rows = []
        for uid in range(2, BIG + 1):
            name = f"{base}-{uid}"
            rows.append((inbox.id, uid, name, "\\Seen" if uid % 3 else "", uid, now, 520))
        store.conn.executemany(
            "INSERT INTO messages(folder_id, uid, base, flags, modseq, internaldate, size,"
            " recent) VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
            rows,
        )
        store.conn.execute(
            "UPDATE folders SET uidnext = ?, highestmodseq = ? WHERE id = ?",
            (BIG + 1, BIG + 1, inbox.id),
        )
        # The sort keys adoption would have kept: threads of 10 replies (each message refers
        # to all its ancestors), 3,000 subjects, dates over a year, 500 senders.
        keys = []
        for uid in range(1, BIG + 1):
            top = uid - (uid - 1) % 10
            refs = " ".join(f"{r}@bench" for r in range(top, uid))
            subject = f"MESSAGE {top % 3000}"
            keys.append((inbox.id, uid, now - (uid * 7919) % 31_536_000, subject,
                         int(uid != top), f"DR{uid % 500}", "USER", "", f"DR {uid % 500}",
                         "USER@BENCH.LOCALHOST", f"{uid}@bench", refs))
        store.conn.executemany(
            "INSERT OR REPLACE INTO sortkeys(folder_id, uid, sent, subject, reply, from_addr,"
            " to_addr, cc_addr, display_from, display_to, message_id, refs)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            keys,
        )
    del path, cur
    store.close()


async def run_benchmarks(config: Config, *, with_mixed: bool = True, with_big: bool = True
                         ) -> None:
    ctx = client_context(config, present_certificate=False)
    cores = os.cpu_count() or 1

    # 1. mixed workload, 20 clients, every core serving: clients resuming their TLS sessions,
    # then clients that never do (a full handshake, with its RSA signature, per connection)
    procs, port, hold = start_workers(config, cores)
    try:
        pids = [p.pid for p in procs if p.pid is not None]
        for resume in (True, False) if with_mixed else ():
            contexts = {
                a: resuming_context(config) if resume else ctx for a in users(CLIENTS)
            }
            counter = [0]
            warm = [0]
            # Warm-up: every user's first login (scrypt, then cached) and first look at its
            # mail (50 deliveries adopted into the index) are not what the steady state
            # measures; the resuming clients get their first TLS session.
            await asyncio.gather(
                *(mixed(port, contexts[a], a, 0.0, warm) for a in users(CLIENTS))
            )
            cpu0 = sum(cpu_seconds(pid) for pid in pids)
            mine0 = time.process_time()
            start = time.perf_counter()
            await asyncio.gather(
                *(mixed(port, contexts[a], a, start + MIXED_SECONDS, counter)
                  for a in users(CLIENTS))
            )
            elapsed = time.perf_counter() - start
            cpu = sum(cpu_seconds(pid) for pid in pids) - cpu0
            clients = (time.process_time() - mine0) / max(counter[0], 1)
            rate = counter[0] / elapsed
            # On a shared machine the rate depends on what else runs; the server's own CPU
            # time per command does not, and bounds what the cores could do alone.
            per = cpu / max(counter[0], 1)
            if resume:
                print(
                    f"mixed workload, {CLIENTS} clients resuming their TLS sessions, {cores} "
                    f"worker processes: {rate:,.0f} commands/s ({counter[0]} commands in "
                    f"{elapsed:.1f} s; target >= 2,000/s)"
                )
                print(
                    f"  server CPU {per * 1000:.2f} ms per command (TLS handshake and login "
                    f"included), clients {clients * 1000:.2f} ms: at most "
                    f"{cores / (per + clients):,.0f} commands/s with both on {cores} otherwise "
                    f"idle cores, {cores / per:,.0f} for the server alone (load average now "
                    f"{os.getloadavg()[0]:.1f})"
                )
            else:
                print(
                    f"  clients that never resume (a full TLS handshake per connection): "
                    f"{rate:,.0f} commands/s, server CPU {per * 1000:.2f} ms per command "
                    f"(load average now {os.getloadavg()[0]:.1f})"
                )

        if with_big:
            # 2. SELECT + FETCH 1:* (FLAGS) on 100,000 messages
            address = "big@bench.localhost"
            c = Client()
            await c.connect(port, ctx)
            await c.cmd(f'LOGIN {address} "{PASSWORD}"')
            t0 = time.perf_counter()
            await c.cmd("SELECT INBOX")
            t1 = time.perf_counter()
            data = await c.bulk("FETCH 1:* (FLAGS)")
            t2 = time.perf_counter()
            assert data.count(b" FETCH (FLAGS (") == BIG, data[-200:]
            print(
                f"SELECT + FETCH 1:* (FLAGS) on {BIG:,} messages: {t2 - t0:.2f} s "
                f"(SELECT {t1 - t0:.2f} s, FETCH {t2 - t1:.2f} s; target < 1 s)"
            )
            t0 = time.perf_counter()
            await c.cmd("SELECT INBOX")
            await c.bulk("FETCH 1:* (FLAGS)")
            print(f"  again (warm): {time.perf_counter() - t0:.2f} s")
            # 3. SORT and THREAD over the whole 100,000-message mailbox, from the index's keys
            for command, count in (("SORT (DATE) UTF-8 ALL", "SORT"),
                                   ("SORT (SUBJECT) UTF-8 ALL", "SORT"),
                                   ("SORT (REVERSE ARRIVAL) UTF-8 ALL", "SORT"),
                                   ("SORT (FROM DATE) UTF-8 ALL", "SORT"),
                                   ("THREAD REFERENCES UTF-8 ALL", "THREAD"),
                                   ("THREAD ORDEREDSUBJECT UTF-8 ALL", "THREAD")):
                t0 = time.perf_counter()
                data = await c.bulk(command)
                elapsed = time.perf_counter() - t0
                assert data.startswith(f"* {count} ".encode()), data[:200]
                print(f"{command} on {BIG:,} messages: {elapsed:.2f} s (target < 1 s)")
            await c.cmd("LOGOUT")
            c.close()
    finally:
        stop_workers(procs)
        hold.close()


async def idle_connections(config: Config) -> None:
    """Memory for 1,000 idle connections (logged in, INBOX selected) in one worker process.

    Run first, before this process builds the big mailbox or runs the mixed workload: the
    worker is forked from it, and whatever heap this process had freed by then would be
    inherited, already resident, and reused by the worker's connections without growing its
    RSS (the figure read 46 MB where the connections took 86)."""
    ctx = client_context(config, present_certificate=False)
    procs, port, hold = start_workers(config, 1)
    try:
        pid = procs[0].pid
        assert pid is not None
        before = rss_kb(pid)
        clients = []
        addresses = users(CLIENTS)
        for i in range(IDLE_CONNECTIONS):
            c = Client()
            await c.connect(port, ctx)
            await c.cmd(f'LOGIN {addresses[i % len(addresses)]} "{PASSWORD}"')
            await c.cmd("SELECT INBOX")
            clients.append(c)
        await asyncio.sleep(1)
        after = rss_kb(pid)
        print(
            f"{IDLE_CONNECTIONS} idle connections (TLS, logged in, INBOX selected): worker RSS "
            f"{after / 1024:.0f} MB ({(after - before) / 1024:.0f} MB for the connections, "
            f"{(after - before) / IDLE_CONNECTIONS:.0f} kB each; target < 300 MB)"
        )
        # NOTIFY (RFC 5465): each connection then looks at the index twice a second, for its
        # selected mailbox and the user's other folders, while its client says nothing.
        quiet = cpu_seconds(pid)
        await asyncio.sleep(NOTIFY_SECONDS)
        quiet = cpu_seconds(pid) - quiet
        for c in clients:
            await c.cmd("NOTIFY SET (selected (MessageNew MessageExpunge FlagChange))"
                        " (personal (MessageNew MessageExpunge FlagChange MailboxName))")
        busy = cpu_seconds(pid)
        await asyncio.sleep(NOTIFY_SECONDS)
        busy = cpu_seconds(pid) - busy
        print(
            f"the same connections idle: worker CPU {100 * quiet / NOTIFY_SECONDS:.1f}% of a core;"
            f" after NOTIFY (selected and personal): {100 * busy / NOTIFY_SECONDS:.1f}%"
            f" ({1000 * busy / NOTIFY_SECONDS / IDLE_CONNECTIONS:.2f} ms per connection-second)"
        )
        for c in clients:
            c.close()
    finally:
        stop_workers(procs)
        hold.close()


def big_mailbox_pg(config: Config) -> None:
    """The same 100,000 messages and sort keys straight into the PostgreSQL tables (one body)."""
    from gateway.postgresql.connection import connect
    from gateway.postgresql.mail import ensure_user, store_body

    now = int(time.time())
    with connect(config) as conn, conn.cursor() as cur:
        user = ensure_user(cur, "big@bench.localhost")
        digest = store_body(cur, message(1, 500))
        cur.execute("SELECT id FROM mail_folder WHERE user_id = %s AND name = 'INBOX'", (user,))
        row = cur.fetchone()
        assert row is not None
        fid = row[0]
        cur.execute(
            "INSERT INTO mail_message (folder_id, uid, digest, flags, modseq, internaldate,"
            " size, recent) SELECT %s, g, %s, CASE WHEN g %% 3 <> 0 THEN '\\Seen' ELSE '' END,"
            " g, %s, 520, false FROM generate_series(1, %s) AS g",
            (fid, digest, now, BIG),
        )
        cur.execute(
            "INSERT INTO mail_sortkeys (folder_id, uid, sent, subject, reply, from_addr,"
            " to_addr, cc_addr, display_from, display_to, message_id, refs)"
            " SELECT %s, g, %s - (g * 7919) %% 31536000,"
            " 'MESSAGE ' || ((g - (g - 1) %% 10) %% 3000),"
            " (g <> g - (g - 1) %% 10)::int, 'DR' || (g %% 500), 'USER', '', 'DR ' || (g %% 500),"
            " 'USER@BENCH.LOCALHOST', g || '@bench', COALESCE((SELECT string_agg(r || '@bench',"
            " ' ' ORDER BY r) FROM generate_series(g - (g - 1) %% 10, g - 1) AS r), '')"
            " FROM generate_series(1, %s) AS g",
            (fid, now, BIG),
        )
        cur.execute("UPDATE mail_folder SET uidnext = %s, highestmodseq = %s WHERE id = %s",
                    (BIG + 1, BIG + 1, fid))
        cur.execute("UPDATE mail_user SET usage = %s WHERE id = %s", (520 * BIG, user))
        conn.commit()


PARTS = ("idle", "mixed", "big")


def main(argv: list[str] | None = None) -> int:
    """`bench_imap.py [idle] [mixed] [big]`: the parts named (all by default), in that order;
    `big` is SELECT, FETCH, SORT and THREAD on 100,000 messages."""
    parts = argv if argv is not None else sys.argv[1:]
    unknown = set(parts) - set(PARTS)
    if unknown:
        print(f"usage: bench_imap.py [{'] ['.join(PARTS)}] (unknown: {' '.join(sorted(unknown))})")
        return 2
    parts = parts or list(PARTS)
    with tempfile.TemporaryDirectory() as tmp, database() as storage:
        config = make_home(Path(tmp), storage)
        print(f"storage: {label()}")
        t0 = time.perf_counter()
        register(config, [*users(CLIENTS), "big@bench.localhost"])
        if BACKEND == "postgresql":
            from gateway.runtime import storage_for

            intake = storage_for(config).intake()
            for address in users(CLIENTS):
                for i in range(50):
                    intake.store([(address, message(i))])
            intake.close()
        else:
            for address in users(CLIENTS):
                root = mailbox_path(config.mailboxes_path, address)
                for i in range(50):
                    deliver(root, message(i))
        if "idle" in parts:
            asyncio.run(idle_connections(config))
        if "big" in parts:
            if BACKEND == "postgresql":
                big_mailbox_pg(config)
            else:
                big_mailbox(config, "big@bench.localhost")
        print(f"(set-up: {time.perf_counter() - t0:.1f} s)")
        if "mixed" in parts or "big" in parts:
            asyncio.run(run_benchmarks(config, with_mixed="mixed" in parts,
                                       with_big="big" in parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
