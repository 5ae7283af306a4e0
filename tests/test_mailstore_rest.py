"""A mail store at rest: nobody used it for a while, so it closed its SQLite connections
(an idle IMAP session's store would hold ~170 KB otherwise). It answers IDLE's "anything
new?" without opening them as long as the index shows no commit, and sees every change made
meanwhile by another process (and by this one) once there is one."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from gateway.store.mailstore import INDEX_NAME, MailStore, StorePool


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "test.localhost" / "doc"


def _index_open(root: Path) -> bool:
    """Does this process hold the index (or its WAL) open?"""
    index = str(root / INDEX_NAME)
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith(index):
                return True
        except OSError:
            continue
    return False


def _in_another_process(root: Path, what: str) -> None:
    def run() -> None:
        store = MailStore(root)
        inbox = store.folder("INBOX")
        assert inbox is not None
        if what == "append":
            store.append(inbox, b"Subject: from elsewhere\r\n\r\nx\r\n", [])
        elif what == "flag":
            store.store_flags(inbox, [1], ["\\Flagged"], "+")
        elif what == "delete":
            store.create_folder("Old")
            store.delete_folder("Old")
        store.close()

    p = multiprocessing.get_context("fork").Process(target=run)
    p.start()
    p.join(60)
    assert p.exitcode == 0


def _rest(store: MailStore) -> None:
    closing = store.rest(0)
    assert closing is not None
    closing()
    assert not _index_open(store.root)


def test_a_store_rests_only_when_unused(root: Path) -> None:
    store = MailStore(root)
    inbox = store.folder("INBOX")
    assert inbox is not None
    assert _index_open(root)
    assert store.rest(30) is None  # just used
    with store.transaction():
        assert store.rest(0) is None  # never in the middle of a transaction
    _rest(store)
    assert store.rest(0) is None  # already resting
    # The next use opens it again, transparently.
    assert store.append(inbox, b"Subject: a\r\n\r\n", []) == 1
    assert store.uids(inbox) == [1]
    assert _index_open(root)
    store.close()


@pytest.mark.parametrize("change", ["append", "flag"])
def test_a_resting_store_answers_idle_without_sqlite_and_sees_other_processes(
    root: Path, change: str
) -> None:
    store = MailStore(root)
    inbox = store.folder("INBOX")
    assert inbox is not None
    store.append(inbox, b"Subject: first\r\n\r\n", [])
    seen = store.folder("INBOX")
    assert seen is not None
    _rest(store)
    for _ in range(3):  # IDLE polls: nothing new, and the index stays closed
        changes = store.changes_since(inbox, seen.highestmodseq, 1)
        assert changes is not None and changes.highestmodseq == seen.highestmodseq
        assert not changes.new and not changes.changed and not changes.expunged
        assert not _index_open(root)
    _in_another_process(root, change)
    changes = store.changes_since(inbox, seen.highestmodseq, 1)
    assert changes is not None and changes.highestmodseq > seen.highestmodseq
    if change == "append":
        assert [uid for uid, _ in changes.new] == [2]
    else:
        assert [(uid, flags) for uid, flags, _ in changes.changed] == [(1, ("\\Flagged",))]
    store.close()


def test_a_resting_store_sees_its_folder_deleted_and_its_own_process_changes(
    root: Path,
) -> None:
    store = MailStore(root)
    store.create_folder("Projets")
    projets = store.folder("Projets")
    assert projets is not None
    other = MailStore(root)  # another session's store in this process (a second connection)
    closing = store.rest(0)
    assert closing is not None
    closing()
    other.delete_folder("Projets")
    assert store.changes_since(projets, projets.highestmodseq, 0) is None
    other.close()
    store.close()


def test_the_pool_rests_stores_in_use_and_idle(tmp_path: Path) -> None:
    pool = StorePool(tmp_path)
    a = pool.acquire("a@test.localhost")
    b = pool.acquire("b@test.localhost")
    pool.release("b@test.localhost")  # b: kept open, unused
    assert pool.rest_idle(30) is None
    closing = pool.rest_idle(0)
    assert closing is not None
    closing()
    assert not _index_open(a.root) and not _index_open(b.root)
    assert a.folder("INBOX") is not None  # in use again: opened
    pool.release("a@test.localhost")
    pool.close()
