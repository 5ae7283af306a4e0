"""A real PostgreSQL server for the tests: Debian's binaries, `initdb` + `pg_ctl` in a folder of
its own, listening on 127.0.0.1 on a free port, stopped at the end (no process is left).

Used by the `postgres_server` (one per test session) and `pg_dsn` (a fresh database per test)
fixtures of conftest.py, and by the benches (`bench/`), which want fsync on.

PostgreSQL refuses to run as root: when the tests run as root (CI, Debian), the server runs as
the `postgres` system user that Debian's package creates, in a folder made for it outside
pytest's 0700 temporary tree.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

USER = "mssgw"


def binaries() -> Path | None:
    """The folder of initdb / pg_ctl / postgres: the newest Debian cluster version, else PATH."""
    def version(initdb: str) -> int:
        name = Path(initdb).parent.parent.name
        return int(name) if name.isdigit() else 0

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PostgresServer:
    """One running cluster. `dsn(database)` gives a libpq URI with the password inline;
    `password_file` holds the password alone (what a configuration would point at)."""

    def __init__(self, *, durable: bool = False, tls: tuple[bytes, bytes] | None = None) -> None:
        """`tls`: (certificate chain PEM, key PEM) of the server: ssl = on, TCP clients may
        (and with `hostssl` rules must) use TLS."""
        bindir = binaries()
        if bindir is None:
            raise FileNotFoundError("PostgreSQL server binaries (Debian package postgresql)")
        self.bindir = bindir
        self.durable = durable
        self.tls = tls
        self.root = Path(tempfile.mkdtemp(prefix="mssgw-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "run"
        self.log = self.root / "server.log"
        self.password = secrets.token_urlsafe(18)
        self.password_file = self.root / "password"
        self.port = _free_port()
        self._as: str | None = None
        self._started = False
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError as exc:
                raise FileNotFoundError("no postgres user (Debian package postgresql)") from exc
            self._as = "postgres"

    # -- lifecycle ----------------------------------------------------------------------------

    def _run(self, *args: str, timeout: float = 120) -> None:
        subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            check=True,
            capture_output=True,
            timeout=timeout,
            user=self._as,
            cwd=self.root,
        )

    def start(self) -> PostgresServer:
        self.sockets.mkdir()
        pwfile = self.root / "initdb-password"
        pwfile.write_text(self.password + "\n")
        self.password_file.write_text(self.password + "\n")
        self.password_file.chmod(0o600)
        owned = [self.root, self.sockets, pwfile]
        if self.tls is not None:
            for name, data in zip(("server.crt", "server.key"), self.tls, strict=True):
                (self.root / name).write_bytes(data)
                (self.root / name).chmod(0o600)
                owned.append(self.root / name)
        if self._as is not None:
            entry = pwd.getpwnam(self._as)
            for path in owned:
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self.root.chmod(0o700)
        try:
            self._run(
                "initdb", "-D", str(self.data), "-U", USER, "--pwfile", str(pwfile),
                "--auth-local=scram-sha-256", "--auth-host=scram-sha-256",
                "-E", "UTF8", "--locale=C", "--no-sync",
            )
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"initdb failed: {exc.stderr.decode(errors='replace')}") from exc
        finally:
            pwfile.unlink()
        options = [
            "-h 127.0.0.1",
            f"-p {self.port}",
            f"-k {self.sockets}",
            "-c max_connections=200",
            "-c shared_buffers=64MB",
        ]
        if self.tls is not None:
            options += ["-c ssl=on", f"-c ssl_cert_file={self.root / 'server.crt'}",
                        f"-c ssl_key_file={self.root / 'server.key'}"]
        if not self.durable:
            # Tests never kill PostgreSQL itself, only the gateway: the server's own durability
            # buys them nothing and costs seconds per run.
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        try:
            self._run(
                "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                "-o", " ".join(options), "start",
            )
        except subprocess.CalledProcessError as exc:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            err = exc.stderr.decode(errors="replace")
            raise RuntimeError(f"pg_ctl start failed: {err}{log}") from exc
        self._started = True
        atexit.register(self.stop)
        self._watch_owner()
        return self

    def _watch_owner(self) -> None:
        """A pytest killed outright (a CI timeout, ^C twice) runs no atexit hook: a detached
        watcher stops the server and removes its folder once this process is gone, so no test
        run leaves a PostgreSQL behind."""
        pg_ctl = self.bindir / "pg_ctl"
        as_user = f"runuser -u {self._as} -- " if self._as is not None else ""
        script = (
            f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 1; done; "
            f"[ -d '{self.data}' ] && {as_user}'{pg_ctl}' -D '{self.data}' -m immediate -w stop"
            f" >/dev/null 2>&1; rm -rf '{self.root}'"
        )
        subprocess.Popen(["sh", "-c", script], start_new_session=True, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self._started:
            self._started = False
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop", timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)

    # -- use ----------------------------------------------------------------------------------

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def dsn_without_password(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL through Debian's psql client (no Python driver needed), return its output."""
        psql = shutil.which("psql") or str(self.bindir / "psql")
        out = subprocess.run(
            [psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", self.dsn(database),
             "-c", sql],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return out.stdout.strip()

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its name."""
        name = name or f"t_{secrets.token_hex(6)}"
        self.psql(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.psql("SELECT 1")
                return
            except subprocess.CalledProcessError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
