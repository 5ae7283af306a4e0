"""Bind the audit log to a configuration, as the registry and the DMP call it.

Stand-in until `gateway/audit.py` (directory contributor) lands: it writes the same JSON lines
(`at`, `actor`, `action`, `target`, `details`), appended with O_APPEND and fsynced, file 0600.
"""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from gateway.config import Config
from gateway.errors import GatewayError

# (actor, action, target, details): the audit log's `record` bound to a configuration.
Audit = Callable[[str, str, str, dict[str, Any]], None]


def no_audit(actor: str, action: str, target: str, details: dict[str, Any]) -> None:
    """For tests and benchmarks that do not look at the audit log."""


def audit_for(config: Config) -> Audit:
    path = config.audit_log_path

    def record(actor: str, action: str, target: str, details: dict[str, Any]) -> None:
        line = json.dumps(
            {
                "at": datetime.now(UTC).isoformat(timespec="microseconds"),
                "actor": actor,
                "action": action,
                "target": target,
                "details": details,
            },
            ensure_ascii=False,
            sort_keys=True,
            default=str,
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise GatewayError(f"audit log: cannot open {path}: {exc.strerror}") from None
        try:
            os.write(fd, (line + "\n").encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)

    return record


def local_actor() -> str:
    """The actor of a command-line action: the local OS user running `mssgw`."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"
