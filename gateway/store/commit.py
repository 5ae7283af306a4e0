"""One durable commit per accepted message: its Maildir copies and its queue entries together.

Every file is written under a `tmp/` folder and fsynced, then all are renamed into place, then each
touched directory is fsynced once: when `store` returns, everything is on disk and the SMTP
server may answer 250. A failure before the renames leaves nothing visible.

Concurrency ("group commit"): commits run in a pool of threads, so the fsyncs of concurrent
sessions are in flight together and the file system (ext4's journal, XFS's log) folds them into
shared journal commits; the event loop never waits on the disk. Measured in bench/bench_smtp.py.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gateway.store.maildir import ensure_maildir, fsync_dir, write_tmp
from gateway.store.queue import Entry, Queue


def store(
    local: Sequence[tuple[Path, bytes]], queued: Sequence[Entry], queue: Queue | None
) -> list[Path]:
    """Durably store Maildir copies (folder, data) and queue entries; returns the Maildir paths."""
    staged: list[tuple[Path, Path]] = []
    try:
        for folder, data in local:
            try:
                tmp, name = write_tmp(folder, data)
            except FileNotFoundError:  # first message for this mailbox
                ensure_maildir(folder)
                tmp, name = write_tmp(folder, data)
            staged.append((tmp, folder / "new" / name))
        n_local = len(staged)
        if queued:
            assert queue is not None
            queue.ensure()
            for entry in queued:
                staged += queue.stage(entry)
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, final in staged:
        os.rename(tmp, final)
    for directory in {final.parent for _, final in staged}:
        fsync_dir(directory)
    return [final for _, final in staged[:n_local]]


class Committer:
    """Runs `store` off the event loop, many commits in flight at once."""

    def __init__(self, queue: Queue | None, threads: int = 32) -> None:
        self.queue = queue
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="commit")

    async def commit(
        self, local: Sequence[tuple[Path, bytes]], queued: Sequence[Entry] = ()
    ) -> list[Path]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, store, local, queued, self.queue)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
