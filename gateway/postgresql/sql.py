"""The SQL the embedded repositories speak, on a PostgreSQL connection.

The directory, the throttle, the registry, the DMP, the flows' keys, the conversations and the
PKI index hold their rules once, written over a DB-API connection in SQLite's dialect
(`?` and `:name` parameters, `BEGIN IMMEDIATE`, `INSERT OR IGNORE`). Their PostgreSQL
implementations are the same classes over this `Connection`, which speaks that subset on a
psycopg 3 connection, plus subclasses where PostgreSQL needs other SQL (DDL, upserts, JSON,
row locks: `gateway.postgresql.stores`). One copy of the rules keeps both backends passing the
same contract tests; the price is this small translation, cached per statement text.

What it translates:
- parameters `?` and `:name` (outside quotes) to psycopg's `%s` / `%(name)s`, and `%` to `%%`;
- `BEGIN IMMEDIATE` (SQLite's "I will write") to `BEGIN`, remembered in `writing` so that a
  repository can lock the rows it reads (`SELECT ... FOR UPDATE`) where SQLite's single writer
  serialised it; a plain `BEGIN` (a consistent read, `gateway.db.snapshot`) to `BEGIN
  ISOLATION LEVEL REPEATABLE READ`: every SELECT of the block sees one snapshot, as in WAL;
- `INSERT OR IGNORE` to `INSERT ... ON CONFLICT DO NOTHING`;
- psycopg's integrity errors to `sqlite3.IntegrityError`, which the shared code catches.

Parameters are bound on the client (psycopg's `ClientCursor`): SQLite's untyped `?` in
`? IS NULL` has no type PostgreSQL could infer on the server. Bulky values (message bodies)
do not come this way: the mail store speaks psycopg directly, with binary parameters.
"""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import psycopg
from psycopg import ClientCursor
from psycopg.pq import TransactionStatus

_TOKEN = re.compile(
    r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\?|(?<![:\w]):([A-Za-z_]\w*)|%"
    r"|\b(LIKE|group_concat)\b",
    re.IGNORECASE,
)
_INSERT_OR_IGNORE = re.compile(r"^\s*INSERT\s+OR\s+IGNORE\s+INTO\b", re.IGNORECASE)
_WORDS = {"like": "ILIKE", "group_concat": "string_agg"}  # SQLite's LIKE ignores ASCII case


@functools.lru_cache(maxsize=2048)
def translate(sql: str, params: bool = True) -> str:
    """SQLite-style SQL -> psycopg's: parameters and `%` (when there are parameters: psycopg
    reads a statement without them as it is), LIKE, group_concat, `INSERT OR IGNORE`."""
    ignore = bool(_INSERT_OR_IGNORE.match(sql))
    if ignore:
        sql = _INSERT_OR_IGNORE.sub("INSERT INTO", sql, count=1)

    def one(m: re.Match[str]) -> str:
        text = m.group(0)
        if m.group(2):
            return _WORDS[text.lower()]
        if not params:
            return text
        if text == "?":
            return "%s"
        if text == "%":
            return "%%"
        if m.group(1):
            return f"%({m.group(1)})s"
        return text.replace("%", "%%")  # a quoted literal

    out = _TOKEN.sub(one, sql)
    if ignore:
        out = out.rstrip().rstrip(";") + " ON CONFLICT DO NOTHING"
    return out


class Row(tuple):  # type: ignore[type-arg]
    """A row read by position or by column name, like sqlite3.Row."""

    __slots__ = ()
    _index: Mapping[str, int] = {}

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


@functools.lru_cache(maxsize=512)
def _row_class(names: tuple[str, ...]) -> type[Row]:
    return type("Row", (Row,), {"__slots__": (), "_index": {n: i for i, n in enumerate(names)}})


def _rows(cursor: psycopg.Cursor[Any]) -> Any:
    desc = cursor.description
    if desc is None:
        return tuple
    cls = _row_class(tuple(c.name for c in desc))
    return lambda values: cls(values)


class Connection:
    """A psycopg connection in autocommit mode (explicit transactions, as the embedded code's
    `isolation_level=None` SQLite connections), answering the sqlite3 calls that code makes."""

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        raw.autocommit = True
        self.raw = raw
        self.writing = False  # inside a BEGIN IMMEDIATE
        self.checked: set[str] = set()  # components whose schema version was checked

    def require_schema(self, component: str) -> None:
        """`gateway.db.migrate` on this backend: the schema is `mssgw init`'s to change."""
        if component not in self.checked:
            from gateway.postgresql.schema import require

            require(self, component)
            self.checked.add(component)

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != TransactionStatus.IDLE

    def _statement(self, sql: str) -> str | None:
        word = sql.lstrip()[:16].upper()
        if word.startswith("BEGIN"):
            if "IMMEDIATE" in word or "EXCLUSIVE" in word:
                self.writing = True
                return "BEGIN"
            self.writing = False
            return "BEGIN ISOLATION LEVEL REPEATABLE READ"
        if word.startswith(("COMMIT", "ROLLBACK", "END")) and not word.startswith(
            "ROLLBACK TO"
        ):
            self.writing = False
        return None

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Any:
        special = self._statement(sql)
        cur = ClientCursor(self.raw, row_factory=_rows)
        try:
            if special is not None:
                cur.execute(special)
            elif params:
                cur.execute(translate(sql), params)
            else:
                cur.execute(translate(sql, False))
        except psycopg.IntegrityError as exc:
            raise sqlite3.IntegrityError(str(exc)) from exc
        return cur

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        cur = ClientCursor(self.raw, row_factory=_rows)
        try:
            cur.executemany(translate(sql), list(rows))
        except psycopg.IntegrityError as exc:
            raise sqlite3.IntegrityError(str(exc)) from exc
        return cur

    def executescript(self, script: str) -> None:
        """Several statements without parameters (a migration), in the caller's transaction."""
        with ClientCursor(self.raw) as cur:
            cur.execute(script)

    def __iter__(self) -> Iterator[Any]:  # pragma: no cover - sqlite3 has none either
        raise TypeError("iterate over execute()'s cursor")

    def close(self) -> None:
        self.raw.close()
