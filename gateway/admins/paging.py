"""One page of a listing, as the API and the console show it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from gateway.directory.validate import InvalidField
from gateway.texts import t

T = TypeVar("T")
MAX_LIMIT = 500


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    total: int | None  # None: not counted (the audit log's word search stops at a full page)
    offset: int
    limit: int
    more: bool = False  # when `total` is None: is there a next page?

    @property
    def has_next(self) -> bool:
        if self.total is None:
            return self.more
        return self.offset + len(self.items) < self.total


def check_window(offset: int | None, limit: int | None, default: int = 50) -> tuple[int, int]:
    o = 0 if offset is None else offset
    n = default if limit is None else limit
    if o < 0:
        raise InvalidField("offset", o, "must be 0 or more")
    if not 1 <= n <= MAX_LIMIT:
        raise InvalidField("limit", n, t("must be between 1 and {n}", n=MAX_LIMIT))
    return o, n


def paginate(items: Sequence[T], offset: int | None, limit: int | None) -> Page[T]:
    o, n = check_window(offset, limit)
    return Page(list(items[o : o + n]), len(items), o, n)


def counted(items: list[T], offset: int, limit: int, count: Callable[[], int]) -> Page[T]:
    """The page a store cut (`items` at `offset`, at most `limit`), with its total: counted by
    `count()` only when the page does not tell it (a short page is the last one)."""
    if len(items) < limit and (items or offset == 0):
        return Page(items, offset + len(items), offset, limit)
    return Page(items, count(), offset, limit)
