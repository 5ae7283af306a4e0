"""Bind the audit log to a configuration, as the registry and the DMP call it.

A thin adapter over gateway.audit (one writer of the log: JSON lines `at`, `actor`, `action`,
`target`, `details`, appended with O_APPEND and fsynced, file 0600).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway import audit
from gateway.audit import local_actor
from gateway.config import Config

# (actor, action, target, details): the audit log's `record` bound to a configuration.
Audit = Callable[[str, str, str, dict[str, Any]], None]


def no_audit(actor: str, action: str, target: str, details: dict[str, Any]) -> None:
    """For tests and benchmarks that do not look at the audit log."""


def audit_for(config: Config) -> Audit:
    path = config.audit_log_path

    def record(actor: str, action: str, target: str, details: dict[str, Any]) -> None:
        audit.append(path, actor, action, target, details)

    return record


__all__ = ["Audit", "audit_for", "local_actor", "no_audit"]
