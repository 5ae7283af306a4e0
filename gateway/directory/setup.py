"""The directory's `mssgw init` step: create its tables and register our own domains."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from gateway.directory import own_domains

if TYPE_CHECKING:
    from gateway.runtime import Runtime


def initialise(runtime: Runtime) -> list[str]:
    config = runtime.config
    added = runtime.directory.register_own_domains(own_domains(config))
    # The database holds password hashes and patients' identities: only our account reads it.
    for suffix in ("", "-wal", "-shm"):
        path = f"{config.database_path}{suffix}"
        if os.path.exists(path):
            os.chmod(path, 0o600)
    return [f"registered our domain: {name}" for name in added]
