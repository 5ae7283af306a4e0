"""The audit log: who changed or read what, when. JSON lines, appended and fsynced.

One line per event: `{"at": ISO-8601 UTC, "actor": ..., "action": ..., "target": ..., "details":
{...}}`. Administrative changes (directory, trust domains, certificates) and reads of patient data
go through `record()`. The file is created 0600: it names patients. Appending with O_APPEND keeps
lines from concurrent processes whole (each line is one write()).
"""

from __future__ import annotations

import functools
import getpass
import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from gateway.audit_index import AuditFilter, AuditIndex, entry_text
from gateway.config import Config
from gateway.errors import GatewayError
from gateway.texts import t

if TYPE_CHECKING:
    from gateway.admins.model import Caller
    from gateway.admins.paging import Page


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    actor: str
    action: str
    target: str
    details: dict[str, Any] = field(default_factory=dict)


def local_actor() -> str:
    """The actor of a command-line change: the local OS user running `mssgw`."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


def _line(actor: str, action: str, target: str, details: dict[str, Any]) -> str:
    return json.dumps(
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


def _write(path: Path, lines: list[str]) -> None:
    """Append `lines` with one write() (O_APPEND keeps them whole) and one fsync."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    except OSError as exc:
        raise GatewayError(t(
            "audit log: cannot open {path}: {strerror}",
            path=path, strerror=exc.strerror)) from None
    try:
        os.write(fd, "".join(line + "\n" for line in lines).encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def append(path: Path, actor: str, action: str, target: str, details: dict[str, Any]) -> None:
    """Append one entry to the log at `path` and fsync it before returning."""
    _write(path, [_line(actor, action, target, details)])


class AuditLog(Protocol):
    """Where the gateway writes who changed or read what (the embedded default: `AuditFile`,
    JSON lines; a database table can implement the same calls). `record` is durable when it
    returns, except inside `held()`, whose entries are durable when the block ends."""

    def record(self, actor: str, action: str, target: str, details: dict[str, Any]) -> None: ...

    def held(self) -> AbstractContextManager[None]:
        """Hold this thread's entries and write them together when the block ends (one fsync
        for a unit of work), whatever happened inside (refusals are recorded too)."""
        ...

    def read(
        self, *, action: str | None = None, target: str | None = None
    ) -> Iterator[AuditEntry]:
        """The entries, oldest first, optionally only one action (or action prefix "x.") and
        target."""
        ...

    def since(self, start: datetime) -> list[AuditEntry]:
        """The entries at or after `start`, oldest first (cheap for recent ones: a day's, for
        the administrators' dashboard)."""
        ...

    def query(
        self, f: AuditFilter, *, offset: int = 0, limit: int = 50
    ) -> tuple[list[AuditEntry], int | None]:
        """One window of the entries matching `f`, newest first, found by the store (a log
        holds millions of entries: a query must not read them all), and how many match;
        None only when `f.words` are searched and the store stopped counting at a full page."""
        ...

    def close(self) -> None: ...


class AuditFile:
    """`AuditLog` in a file of JSON lines (0600), appended and fsynced.

    A prescription's registration and DMP filing make two entries; written one by one they cost
    two opens and two fsyncs (a tenth of a pool process's time under bench_journey). Inside
    `held()` entries are kept and written with one write and one fsync when the block ends,
    whatever happened (a refusal is recorded too). Put `held()` inside the database transaction
    so that, as before, the entries are on disk before the COMMIT. Held entries are per thread:
    a worker's threads share one AuditFile."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._index: AuditIndex | None = None  # made by the first query

    def record(self, actor: str, action: str, target: str, details: dict[str, Any]) -> None:
        line = _line(actor, action, target, details)
        held: list[str] | None = getattr(self._local, "held", None)
        if held is not None:
            held.append(line)
        else:
            _write(self.path, [line])

    # A Recorder too: (actor, action, target, details), as the registry and the DMP take it.
    __call__ = record

    @contextmanager
    def held(self) -> Iterator[None]:
        if getattr(self._local, "held", None) is not None:  # nested: the outer block writes
            yield
            return
        self._local.held = []
        try:
            yield
        finally:
            lines, self._local.held = self._local.held, None
            if lines:
                _write(self.path, lines)

    def read(
        self, *, action: str | None = None, target: str | None = None
    ) -> Iterator[AuditEntry]:
        return _read(self.path, action=action, target=target)

    def since(self, start: datetime) -> list[AuditEntry]:
        return since(self.path, start)

    def query(
        self, f: AuditFilter, *, offset: int = 0, limit: int = 50
    ) -> tuple[list[AuditEntry], int | None]:
        if self._index is None:
            self._index = AuditIndex(self.path)
        raws, total = self._index.query(f, offset, limit)
        return [_entry(r) for r in raws], total

    def close(self) -> None:
        if self._index is not None:
            self._index.close()


Batched = AuditFile  # its former name


def record(config: Config, actor: str, action: str, target: str, **details: Any) -> None:
    """Record in the configuration's audit file that `actor` did `action` on `target` (tests
    and tools; the gateway's code records through its `AuditLog`)."""
    append(config.audit_log_path, actor, action, target, details)


def read(
    config: Config, *, action: str | None = None, target: str | None = None
) -> Iterator[AuditEntry]:
    """The entries of the configuration's audit file (tests and tools; the gateway's code reads
    through its `AuditLog`)."""
    return _read(config.audit_log_path, action=action, target=target)


def _read(
    path: Path, *, action: str | None = None, target: str | None = None
) -> Iterator[AuditEntry]:
    if not path.exists():
        return
    with path.open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash mid-write: skip it, keep reading
            act = raw.get("action", "")
            if action and not (act == action or (action.endswith(".") and act.startswith(action))):
                continue
            if target and raw.get("target") != target:
                continue
            yield AuditEntry(
                at=datetime.fromisoformat(raw["at"]),
                actor=raw.get("actor", ""),
                action=act,
                target=raw.get("target", ""),
                details=raw.get("details") or {},
            )


# `record` bound to a configuration, as repositories take it: (actor, action, target, details).
Recorder = Callable[[str, str, str, dict[str, Any]], None]


def recorder(config: Config) -> Recorder:
    """The audit log of `config` as a Recorder (the registry and the DMP write through it)."""
    return functools.partial(append, config.audit_log_path)


def no_record(actor: str, action: str, target: str, details: dict[str, Any]) -> None:
    """A Recorder that keeps nothing: for tests and benchmarks that do not read the log."""


def _entry(raw: dict[str, Any]) -> AuditEntry:
    return AuditEntry(
        at=datetime.fromisoformat(raw["at"]),
        actor=raw.get("actor", ""),
        action=raw.get("action", ""),
        target=raw.get("target", ""),
        details=raw.get("details") or {},
    )


def since(path: Path, start: datetime, block: int = 1 << 16) -> list[AuditEntry]:
    """The entries at or after `start`, oldest first, reading the file backwards from its end
    (the log is in time order: today's entries cost what today wrote, not the whole log)."""
    if not path.exists():
        return []
    out: list[AuditEntry] = []
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        pos = f.tell()
        rest = b""
        while pos > 0:
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            chunk = f.read(step) + rest
            lines = chunk.split(b"\n")
            rest = lines.pop(0) if pos > 0 else b""
            for line in reversed(lines):
                if not line.strip():
                    continue
                try:
                    entry = _entry(json.loads(line))
                except (ValueError, KeyError):
                    continue
                if entry.at < start:
                    out.reverse()
                    return out
                out.append(entry)
    out.reverse()
    return out


def entry_dict(e: AuditEntry) -> dict[str, Any]:
    return {"at": e.at.isoformat(), "actor": e.actor, "action": e.action, "target": e.target,
            "details": e.details}


def parse_since(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise GatewayError(t(
            "since: {value!r} is invalid: a date is YYYY-MM-DD[THH:MM]", value=value)) from None
    return when if when.tzinfo else when.astimezone()


class AuditService:
    """Who changed or read what: the query the CLI, the API and the console share."""

    resource = "audit"

    def __init__(self, log: AuditLog, caller: Caller) -> None:
        self.log = log
        self.caller = caller

    def _filter(
        self, action: str | None, target: str | None, actor: str | None, since: str | None,
        search: str | None,
    ) -> AuditFilter:
        self.caller.require(self.resource)
        return AuditFilter(action=action or None, target=target or None, actor=actor or None,
                           since=parse_since(since), words=tuple((search or "").lower().split()))

    def query(
        self, *, action: str | None = None, target: str | None = None, actor: str | None = None,
        since: str | None = None, search: str | None = None,
    ) -> list[AuditEntry]:
        """Every matching entry, oldest first, reading the whole log (the CLI's `audit list`).
        `search`: words found anywhere in the entry."""
        f = self._filter(action, target, actor, since, search)
        out = []
        for e in self.log.read(action=f.action, target=f.target):
            if f.since is not None and e.at < f.since:
                continue
            if f.actor and e.actor != f.actor:
                continue
            if f.words:
                text = entry_text(entry_dict(e))
                if not all(w in text for w in f.words):
                    continue
            out.append(e)
        return out

    def last(
        self, n: int, *, action: str | None = None, target: str | None = None,
        actor: str | None = None, since: str | None = None, search: str | None = None,
    ) -> list[AuditEntry]:
        """The `n` most recent matching entries, oldest first (`audit list --last N`)."""
        f = self._filter(action, target, actor, since, search)
        entries, _ = self.log.query(f, offset=0, limit=max(n, 0))
        entries.reverse()
        return entries

    def page(
        self, *, offset: int | None = None, limit: int | None = None, action: str | None = None,
        target: str | None = None, actor: str | None = None, since: str | None = None,
        search: str | None = None,
    ) -> Page[AuditEntry]:
        """One page, newest first (what a person reading the log wants to see first), found by
        the log's store without reading the whole log."""
        from gateway.admins.paging import Page, check_window

        f = self._filter(action, target, actor, since, search)
        o, n = check_window(offset, limit)
        # One entry more than the page tells whether there is a next one when the store does
        # not count (a word search).
        entries, total = self.log.query(f, offset=o, limit=n + 1)
        more = len(entries) > n
        # The log names patients (their INS, their mailboxes): reading it through the API or
        # the console is a read of patient data, recorded like the others. (The CLI's `audit
        # list` is not: whoever runs it on the machine can read the log's file itself.)
        filters = {"action": action, "target": target, "actor": actor, "since": since,
                   "search": search}
        self.log.record(self.caller.actor, "audit.query", target or "*", {
            "filters": {k: v for k, v in filters.items() if v}, "offset": o,
            "count": len(entries[:n]), "via": self.caller.via})
        return Page(entries[:n], total, o, n, more=more)
