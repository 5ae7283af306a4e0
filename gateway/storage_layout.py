"""The on-disk layout every gateway home has: the folders for storage, created by `mssgw init`."""

from __future__ import annotations

import os

from gateway.config import Config


def initialise(config: Config) -> list[str]:
    created: list[str] = []
    for label, path in (
        ("data folder", config.database_path.parent),
        ("mailboxes", config.mailboxes_path),
        ("queue", config.queue_path),
        ("certificates", config.certs_path),
        ("audit log folder", config.audit_log_path.parent),
    ):
        if not path.is_dir():
            path.mkdir(parents=True, exist_ok=True)
            created.append(f"created {label}: {path}")
    # Only the gateway's own account may read keys and mail.
    for path in (config.certs_path, config.mailboxes_path, config.queue_path):
        os.chmod(path, 0o700)
    return created
