"""Atomic file writes for keys, certificates and CRLs, and the layout of `certs/`.

A file is written to a temporary name created with O_CREAT|O_EXCL and its final mode (so a
private key is never readable by others, not even for an instant), fsynced, then renamed over
the target and the folder fsynced: a reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from gateway.config import Config
from gateway.fileio import write_atomic
from gateway.pki.kinds import CA


def write_private(path: Path, data: bytes) -> None:
    """A private key (or anything holding one): mode 0600, in a 0700 folder."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, data, 0o600)


_T = TypeVar("_T")
# path -> (mtime_ns, size, parser, parsed): verifiers run per handshake, the files change rarely.
_cache: dict[Path, tuple[int, int, Any, Any]] = {}


def load_cached(path: Path, parse: Callable[[bytes], _T]) -> _T:
    """`parse(path's bytes)`, re-parsed only when the file changes (atomic writes replace the
    file, so a new version always has a new mtime or size). Raises OSError/ValueError."""
    st = path.stat()
    hit = _cache.get(path)
    if hit and hit[0] == st.st_mtime_ns and hit[1] == st.st_size and hit[2] is parse:
        value: _T = hit[3]
        return value
    value = parse(path.read_bytes())
    _cache[path] = (st.st_mtime_ns, st.st_size, parse, value)
    return value


@dataclass(frozen=True)
class Layout:
    """Where everything lives under `certs/` (see certs/README.md)."""

    root: Path

    @classmethod
    def of(cls, config: Config) -> Layout:
        return cls(config.certs_path)

    @property
    def private(self) -> Path:
        return self.root / "private"

    def ca_cert(self, ca: CA) -> Path:
        return self.root / "ca" / f"{ca.value}.pem"

    def ca_key(self, ca: CA) -> Path:
        return self.private / f"ca-{ca.value}.key"

    def ca_crl(self, ca: CA) -> Path:
        return self.root / "crl" / f"{ca.value}.crl.pem"

    @property
    def chain(self) -> Path:
        """Our issuing CAs then the root: what a client needs beside the root to build a chain."""
        return self.root / "ca" / "chain.pem"

    def cert(self, serial: str) -> Path:
        """The issued certificate followed by its issuing CA (loadable by load_cert_chain)."""
        return self.root / "issued" / f"{serial}.pem"

    def key(self, serial: str) -> Path:
        return self.private / f"{serial}.key"

    @property
    def anchors(self) -> Path:
        return self.root / "anchors"

    @property
    def peer_crls(self) -> Path:
        return self.root / "crl" / "peers"
