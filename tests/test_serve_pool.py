"""`mssgw serve` leaves no process behind: the process pool of a worker ends with the worker,
whether the gateway stops (SIGTERM) or the worker is killed (SIGKILL, then restarted)."""

from __future__ import annotations

import os
import signal
import smtplib
import time
from email.policy import SMTP
from pathlib import Path

from smtp_helpers import DOCTOR, PATIENT, client_context, message, setup_gateway
from test_smtp_crash import start_serve


def descendants(pid: int) -> dict[int, str]:
    """Every process under `pid`, with its command line."""
    out: dict[int, str] = {}
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        for c in map(int, children):
            try:
                out[c] = Path(f"/proc/{c}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            todo.append(c)
    return out


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def gone(pids: set[int], timeout: float = 15.0) -> set[int]:
    """Those of `pids` still alive after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = {p for p in pids if alive(p)}
        if not left:
            return set()
        time.sleep(0.2)
    return {p for p in pids if alive(p)}


def mail_a_patient(config, port: int) -> None:
    """A mail to a patient goes through the flows' process pool (which starts on first use)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as c:
        c.starttls(context=client_context(config))
        c.login(DOCTOR, "correct horse battery staple")
        c.sendmail(DOCTOR, [PATIENT], message(DOCTOR, PATIENT).as_bytes(policy=SMTP))


def pool_processes(pid: int) -> set[int]:
    return {p for p, cmd in descendants(pid).items() if "spawn_main" in cmd}


def test_no_pool_process_outlives_its_worker(gateway_home):
    config = setup_gateway(gateway_home, rate_limit_client="0", rate_limit_account="0")
    proc, ports = start_serve(gateway_home / "config.toml")
    try:
        mail_a_patient(config, ports["smtp submission"])
        pools = pool_processes(proc.pid)
        assert pools, "the pool started for the mail to a patient"
        workers = {int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
                   .read_text().split()}
        everything = set(descendants(proc.pid))
        # A worker killed outright: its pool processes end too; the supervisor starts a new
        # worker, whose pool serves the next mail.
        for w in workers:
            os.kill(w, signal.SIGKILL)
        assert gone(pools) == set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                mail_a_patient(config, ports["smtp submission"])
                break
            except (OSError, smtplib.SMTPException):
                time.sleep(0.5)
        everything |= set(descendants(proc.pid))
        assert pool_processes(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    # The gateway stopped: nothing it started is left running.
    assert gone(everything) == set()
