"""The directory's `mssgw init` step: create its tables and register our own domains."""

from __future__ import annotations

import os

from gateway.audit import local_actor
from gateway.config import Config
from gateway.directory import open_directory, own_domains


def initialise(config: Config) -> list[str]:
    directory = open_directory(config, actor=local_actor())
    try:
        added = directory.register_own_domains(own_domains(config))
    finally:
        directory.close()
    # The database holds password hashes and patients' identities: only our account reads it.
    for suffix in ("", "-wal", "-shm"):
        path = f"{config.database_path}{suffix}"
        if os.path.exists(path):
            os.chmod(path, 0o600)
    return [f"registered our domain: {name}" for name in added]
