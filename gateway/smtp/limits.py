"""Rate limits (messages per minute per client address, per account), shared by every worker.

`mssgw serve` runs one worker process per core and the kernel spreads connections across them, so
counters kept in each process would let a client reach N times its limit. The counters live in a
small file (`ratelimits.map` beside the database) that every worker maps in memory (MAP_SHARED);
an `flock` on it makes each check-and-count atomic across processes. One hit costs two system
calls and a few struct reads: no database round trip per message.

Each key (scope + address) is a token bucket: `per_minute` tokens at most, refilled at
`per_minute / 60` per second; a message takes one token. A client may send `per_minute` messages
at once, then `per_minute` per minute. The table has a fixed number of slots; a slot whose bucket
is full again (idle for a whole window) is free, so memory is bounded; when every slot a key may
use is busy, the one idle longest is taken over (that key starts afresh). Failed-AUTH lockouts,
which must hold exactly and survive restarts, live in the database (gateway.directory.auth).
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
import time
from collections.abc import Callable
from pathlib import Path

_SLOT = struct.Struct("<8sdd")  # key fingerprint, tokens left, time of the last update
SLOTS = 16384  # 384 KB
RATE_LIMITS_FILE = "ratelimits.map"  # beside the database
_PROBES = 8  # slots a key may use: its own and the next ones
_EMPTY = bytes(8)


class SharedRateLimits:
    """The token buckets of every worker of one gateway (one file, mapped by each process)."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        size = SLOTS * _SLOT.size
        if os.fstat(self._fd).st_size != size:
            with self._locked():
                if os.fstat(self._fd).st_size != size:
                    os.ftruncate(self._fd, size)  # a new (or foreign) file: all slots empty
        self._map = mmap.mmap(self._fd, size, mmap.MAP_SHARED)

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)

    def _locked(self) -> _Flock:
        return _Flock(self._fd)

    def hit(self, key: str, per_minute: int, window: float = 60.0) -> float | None:
        """Count one message for `key`; None when allowed, else the seconds to wait."""
        if per_minute <= 0:
            return None
        rate = per_minute / window
        digest = hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=8).digest()
        digest = digest if digest != _EMPTY else b"\x01" + digest[1:]
        first = int.from_bytes(digest, "little") % SLOTS
        with self._locked():
            now = self.clock()
            found, free, victim, victim_last = -1, -1, first, float("inf")
            for i in range(_PROBES):
                slot = (first + i) % SLOTS
                fp, tokens, last = _SLOT.unpack_from(self._map, slot * _SLOT.size)
                if fp == digest:
                    found = slot
                    break
                # Empty, or idle for a whole window: its bucket is full again, so forgetting
                # it changes nothing for its key.
                if free < 0 and (fp == _EMPTY or last + window <= now):
                    free = slot
                if last < victim_last:
                    victim, victim_last = slot, last
            if found >= 0:
                slot = found
                tokens = min(float(per_minute), tokens + max(0.0, now - last) * rate)
            else:
                slot = free if free >= 0 else victim
                tokens = float(per_minute)
            allowed = tokens >= 1.0
            _SLOT.pack_into(
                self._map, slot * _SLOT.size, digest, tokens - 1.0 if allowed else tokens, now
            )
        return None if allowed else (1.0 - tokens) / rate


class _Flock:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)


class RateLimiter:
    """One limit (`per_minute` for every key of a scope) over the shared buckets; no limit when
    `per_minute` is 0 or there is no shared table."""

    def __init__(self, shared: SharedRateLimits | None, scope: str, per_minute: int) -> None:
        self.shared = shared
        self.scope = scope
        self.limit = per_minute

    def hit(self, key: str) -> float | None:
        if self.shared is None or self.limit <= 0:
            return None
        return self.shared.hit(f"{self.scope}\0{key}", self.limit)
