"""The validator process: the four generic CI-SIS layers (IHE, ModelesDeContenusCDA,
Modeles_ANS, StrucMin) for documents from outside, in one process per machine.

Why a process of its own: Saxon-HE needs 5-15 s to compile the layers (rewritten by
`svrl_rewrite`; StrucMin's is still 2.4 MB of XSLT) and then holds ~300 MB; the flows run in
every worker's process pool (four processes on two cores), which would each pay it. Once
compiled, a document costs ~25 ms of this process's CPU (docs/architecture.md, `make bench`).

How: the first flow that needs it (a pool process) connects to the Unix socket
`[documents] validator_socket`; when nobody listens it starts the validator (under a lock
file, so one process starts it) and waits for it. The validator ends when the worker whose
pool started it ends, or after `IDLE_SECONDS` without a request: nothing outlives the
gateway. Requests and answers are pickles over `multiprocessing.connection` authenticated by
a key in a 0600 file beside the socket (a pickle from anyone else would be code to run).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import multiprocessing
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Client, Listener
from pathlib import Path
from typing import Any

from gateway.config import Config
from gateway.documents.validate import Kit, LayerResult, ValidationReport, validate_document
from gateway.errors import GatewayError

GENERIC = ("IHE", "ModelesDeContenusCDA", "Modeles_ANS", "StrucMin")
IDLE_SECONDS = 600.0
START_SECONDS = 180.0  # starting it includes compiling every layer (tens of seconds, loaded)
log = logging.getLogger("mssgw.validator")


class ValidatorUnavailable(GatewayError):
    """The validator process could not be reached or started."""


@dataclass(frozen=True)
class Address:
    socket: Path

    @property
    def key_file(self) -> Path:
        return self.socket.with_name(self.socket.name + ".key")

    @property
    def lock_file(self) -> Path:
        return self.socket.with_name(self.socket.name + ".lock")

    def key(self) -> bytes:
        return self.key_file.read_bytes()


def for_config(config: Config) -> Callable[[bytes], ValidationReport] | None:
    """What the flows pass to `check_incoming` as `generic`: None when the configuration
    keeps documents from outside to their model's layers."""
    mode = config.documents.incoming_layers
    if mode == "model":
        return None
    if mode != "all":
        raise GatewayError(f"[documents] incoming_layers = {mode!r}: write \"all\" or"
                           " \"model\"")
    address = Address(config.path(config.documents.validator_socket))
    kit = Kit.of(config)
    return lambda data: validate_generic(address, kit, data)


def remote(address: Address, kit: Kit) -> Kit:
    """`kit` with its generic layers run by the validator process at `address` (what the
    tests share for a session: one compile)."""
    def run(data: bytes, layers: tuple[str, ...]) -> list[LayerResult]:
        return validate_generic(address, kit, data, layers=layers).layers

    return dataclasses.replace(kit, remote=run)


def running(address: Address) -> bool:
    """Whether a validator answers at `address` (one is not started for asking)."""
    conn = _try_connect(address)
    if conn is None:
        return False
    conn.close()
    return True


def validate_generic(address: Address, kit: Kit, data: bytes, timeout: float = START_SECONDS,
                     layers: tuple[str, ...] = GENERIC) -> ValidationReport:
    """The generic layers' report on `data`, from the validator process (started if needed)."""
    conn = _connect(address, kit, timeout)
    try:
        conn.send(("validate", (data, layers)))
        if not conn.poll(timeout):
            raise ValidatorUnavailable(f"the validator did not answer within {timeout:.0f} s")
        answer = conn.recv()
    except (OSError, EOFError) as exc:
        raise ValidatorUnavailable(f"the validator went away: {exc}") from None
    finally:
        conn.close()
    if isinstance(answer, str):
        raise ValidatorUnavailable(answer)
    assert isinstance(answer, ValidationReport)
    return answer


def start(address: Address, kit: Kit, owner: int, timeout: float = START_SECONDS) -> None:
    """Start the validator now (not at the first document) for `owner`'s lifetime, and wait
    until its layers are compiled."""
    _connect(address, kit, timeout, owner).close()
    conn = _connect(address, kit, timeout, owner)
    try:
        conn.send(("ping", b""))
        if not conn.poll(timeout):
            raise ValidatorUnavailable(f"the validator did not answer within {timeout:.0f} s")
        conn.recv()
    finally:
        conn.close()


def stop(address: Address) -> None:
    """Ask the validator at `address` to end (nothing when none runs)."""
    conn = _try_connect(address)
    if conn is None:
        return
    with conn, contextlib.suppress(OSError, EOFError):
        conn.send(("stop", b""))
        conn.poll(10)


def _try_connect(address: Address) -> Any:
    try:
        return Client(str(address.socket), family="AF_UNIX", authkey=address.key())
    except (OSError, EOFError):
        return None


def _connect(address: Address, kit: Kit, timeout: float, owner: int | None = None) -> Any:
    conn = _try_connect(address)
    if conn is not None:
        return conn
    address.socket.parent.mkdir(parents=True, exist_ok=True)
    with open(address.lock_file, "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one starter; the others wait here, then connect
        conn = _try_connect(address)
        if conn is not None:
            return conn
        _start(address, kit, os.getppid() if owner is None else owner)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            conn = _try_connect(address)
            if conn is not None:
                return conn
            time.sleep(0.1)
    raise ValidatorUnavailable(f"the validator did not start within {timeout:.0f} s"
                               f" ({address.socket})")


def _start(address: Address, kit: Kit, owner: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        address.socket.unlink()  # a dead validator's socket
    fd = os.open(address.key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_bytes(32))
    # The owner (the worker whose pool process asks first) ends it by ending. Its own
    # session: a ^C at the terminal is the supervisor's to pass on.
    args = [sys.executable, "-m", "gateway.documents.validator", str(address.socket),
            str(kit.schema or ""), str(kit.schematrons or ""), str(kit.cache or ""),
            str(owner)]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
    # Reaped when it ends (it outlives this call: the owner check and the idle timer end it).
    threading.Thread(target=proc.wait, name="validator-reaper", daemon=True).start()


def serve(address: Address, kit: Kit, owner: int) -> None:
    """The validator's main: compile every layer, then answer requests one at a time (Saxon is
    not thread-safe; one document's layers take well under a second once compiled)."""
    last = [time.monotonic()]

    def watch() -> None:
        while os.getppid() != 1 and _alive(owner) and \
                time.monotonic() - last[0] < IDLE_SECONDS:
            time.sleep(1.0)
        with contextlib.suppress(OSError):
            address.socket.unlink()
        os._exit(0)

    threading.Thread(target=watch, name="owner-watch", daemon=True).start()
    old = os.umask(0o077)
    try:
        listener = Listener(str(address.socket), family="AF_UNIX", authkey=address.key())
    finally:
        os.umask(old)
    warm(kit)
    while True:
        try:
            conn = listener.accept()
        except (OSError, EOFError, multiprocessing.AuthenticationError):
            continue
        with conn:
            try:
                kind, data = conn.recv()
                last[0] = time.monotonic()
                if kind == "validate":
                    document, layers = data
                    conn.send(validate_document(document, kit=kit, layers=[
                        n for n in layers if n in GENERIC]))
                elif kind == "ping":
                    conn.send("pong")
                elif kind == "stop":
                    with contextlib.suppress(OSError):
                        address.socket.unlink()
                    conn.send("stopping")
                    os._exit(0)
            except Exception as exc:  # an answer, not a dead validator
                with contextlib.suppress(OSError):
                    conn.send(f"the validator failed: {type(exc).__name__}: {exc}")
            last[0] = time.monotonic()


def warm(kit: Kit) -> None:
    """Compile every generic layer now (the first document would otherwise wait for it)."""
    from gateway.documents import schematron

    if kit.schematrons is None:
        return
    engine = schematron.engine()
    for layer in schematron.GENERIC_LAYERS:
        with contextlib.suppress(schematron.SchematronError):
            engine.compiled(kit.schematrons, layer, kit.cache)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(argv: list[str]) -> int:
    """`python -m gateway.documents.validator SOCKET SCHEMA SCHEMATRONS CACHE OWNER_PID`, as
    `_start` runs it (the flows start it; nobody needs to by hand)."""
    socket, schema, schematrons, cache, owner = argv
    kit = Kit(Path(schema) if schema else None, Path(schematrons) if schematrons else None,
              Path(cache) if cache else None)
    serve(Address(Path(socket)), kit, int(owner))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
