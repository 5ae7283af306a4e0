"""The mail store: Maildir++ folders with a per-user SQLite index shared between processes."""

from __future__ import annotations

import multiprocessing
import os

import pytest

from gateway.store import maildir
from gateway.store.mailstore import INDEX_NAME, MailStore, StoreError, folder_dir_name


@pytest.fixture
def root(tmp_path):
    return tmp_path / "test.localhost" / "doc"


def test_special_use_folders_exist_from_the_start(root):
    store = MailStore(root)
    folders = {f.name: f.special_use for f in store.folders()}
    assert folders == {"INBOX": None, "Sent": "\\Sent", "Drafts": "\\Drafts", "Trash": "\\Trash"}
    assert (root / ".Sent" / "cur").is_dir() and (root / "new").is_dir()
    assert oct(os.stat(root / INDEX_NAME).st_mode & 0o777) == "0o600"


def test_folder_names_map_to_safe_maildir_directories(root):
    assert folder_dir_name("A/B") == ".A.B"
    assert folder_dir_name("Dr. Martin/100%") == ".Dr%2E Martin.100%25"
    store = MailStore(root)
    for bad in ("", "/x", "x/", "a//b", "../x", "a/../b", "x*", "a%b", "c\x01"):
        with pytest.raises(StoreError):
            store.create_folder(bad)
    store.create_folder("Dr. Martin/2026")
    assert (root / ".Dr%2E Martin.2026" / "cur").is_dir()
    assert all(p.parent == root for p in root.glob(".*"))


def test_delivery_is_adopted_with_ascending_uids(root):
    store = MailStore(root)
    inbox = store.folder("INBOX")
    for i in range(3):
        maildir.deliver(root, f"Subject: {i}\r\n\r\nx\r\n".encode())
    assert store.import_new(inbox)
    assert store.uids(inbox) == [1, 2, 3]
    assert list((root / "new").iterdir()) == [] and len(list((root / "cur").iterdir())) == 3
    assert not store.import_new(inbox)


def test_crash_between_index_commit_and_rename_loses_nothing(root, monkeypatch):
    store = MailStore(root)
    inbox = store.folder("INBOX")
    path = maildir.deliver(root, b"Subject: x\r\n\r\nbody\r\n")

    def crash(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "rename", crash)
    with pytest.raises(KeyboardInterrupt):
        store.import_new(inbox)
    monkeypatch.undo()
    assert path.exists()  # still in new/, but indexed
    [info] = store.infos(inbox, [1]).values()
    assert store.read(inbox, info.base) == b"Subject: x\r\n\r\nbody\r\n"
    fresh = MailStore(root)
    fresh.import_new(fresh.folder("INBOX"))
    assert fresh.uids(inbox) == [1] and not path.exists()


def test_uidvalidity_changes_when_a_folder_is_recreated(root):
    store = MailStore(root)
    store.create_folder("Projets")
    first = store.folder("Projets").uidvalidity
    store.append(store.folder("Projets"), b"Subject: a\r\n\r\n", [])
    store.delete_folder("Projets")
    store.create_folder("Projets")
    again = store.folder("Projets")
    assert again.uidvalidity > first and again.uidnext == 1
    assert MailStore(root).folder("Projets").uidvalidity == again.uidvalidity


def _deliver_and_import(root: str, n: int) -> None:
    store = MailStore(maildir.Path(root))
    inbox = store.folder("INBOX")
    for i in range(n):
        maildir.deliver(maildir.Path(root), f"Subject: {os.getpid()}-{i}\r\n\r\n".encode())
        store.import_new(inbox)
        store.store_flags(inbox, store.uids(inbox)[-1:], ["\\Seen"], "+")


def test_processes_sharing_a_mailbox_never_clash(root):
    MailStore(root).close()
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_deliver_and_import, args=(str(root), 15)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = MailStore(root)
    inbox = store.folder("INBOX")
    store.import_new(inbox)
    assert store.uids(inbox) == list(range(1, 46))
    infos = store.infos(inbox, store.uids(inbox))
    assert len({i.base for i in infos.values()}) == 45
    assert inbox.uidvalidity == store.folder("INBOX").uidvalidity


def test_changes_since_reports_new_flags_and_expunges(root):
    store = MailStore(root)
    inbox = store.folder("INBOX")
    for _ in range(3):
        store.append(inbox, b"Subject: x\r\n\r\n", [])
    start = store.folder("INBOX").highestmodseq
    store.store_flags(inbox, [1], ["\\Deleted"], "+")
    store.store_flags(inbox, [2], ["$Urgent"], "+")
    store.expunge(inbox)
    store.append(inbox, b"Subject: y\r\n\r\n", [])
    changes = store.changes_since(inbox, start, 3)
    assert changes.new_uids == [4] and changes.expunged == [1]
    assert [(u, f) for u, f, _ in changes.changed] == [(2, ("$Urgent",))]
    assert store.folder("INBOX").keywords == ("$Urgent",)


def test_deliveries_get_uids_in_delivery_order(root):
    store = MailStore(root)
    inbox = store.folder("INBOX")
    for name in ("1700000000.M99P1Q1R1.h,S=9", "1700000000.M100P1Q2R2.h,S=9",
                 "1700000001.M5P1Q3R3.h,S=9"):
        (root / "new" / name).write_bytes(b"Subject: " + name[11:16].encode() + b"\r\n\r\n")
    store.import_new(inbox)
    infos = store.infos(inbox, [1, 2, 3])
    assert [infos[u].base.split(".")[1][:4] for u in (1, 2, 3)] == ["M99P", "M100", "M5P1"]


def test_an_index_from_before_internaldate_zones_is_upgraded_in_place(root):
    """Version 1 indexes had no INTERNALDATE zone and kept subscriptions on the folders: opening
    one adds the zone (UTC for the messages already there), moves the subscriptions to their
    own table, and keeps every message and flag."""
    import sqlite3

    store = MailStore(root)
    inbox = store.folder("INBOX")
    uid = store.append(inbox, b"Subject: old\r\n\r\n", ["\\Seen"], 1_000_000_000, tz=120)
    store.close()
    conn = sqlite3.connect(root / INDEX_NAME)
    conn.execute("ALTER TABLE messages DROP COLUMN tz")
    conn.execute("DROP TABLE subscriptions")
    conn.execute("UPDATE folders SET subscribed = (name != 'Trash')")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    store = MailStore(root)
    inbox = store.folder("INBOX")
    info = store.infos(inbox, [uid])[uid]
    assert (info.flags, info.internaldate, info.tz) == (("\\Seen",), 1_000_000_000, 0)
    assert store.subscriptions() == {"INBOX", "Sent", "Drafts"}
    new = store.append(inbox, b"Subject: new\r\n\r\n", [], 1_000_000_000, tz=-300)
    assert store.infos(inbox, [new])[new].tz == -300
    store.close()


def test_appends_in_worker_threads_while_the_main_connection_works(root):
    """IMAP APPEND runs `append` in a thread (its own connection): concurrent appends get
    distinct ascending UIDs, and the main connection sees each one once it returns."""
    from concurrent.futures import ThreadPoolExecutor

    store = MailStore(root)
    inbox = store.folder("INBOX")
    with ThreadPoolExecutor(4) as pool:
        futures = [
            pool.submit(store.append, inbox, b"Subject: %d\r\n\r\nx\r\n" % i, ["$Label"])
            for i in range(12)
        ]
        for _ in range(12):
            store.counts(inbox)  # the main connection in use meanwhile
        uids = sorted(f.result() for f in futures)
    assert uids == list(range(1, 13))
    assert store.view(inbox).uids == uids
    assert "$Label" in store.folder("INBOX").keywords
    store.create_folder("Old")
    old = store.folder("Old")
    store.delete_folder("Old")
    with pytest.raises(StoreError, match="deleted"):
        store.append(old, b"Subject: late\r\n\r\n", [])
    assert not list((root / ".Old" / "cur").glob("*"))  # the file went with the refusal
    store.close()


def test_vanished_since_answers_from_records_or_a_superset_once_they_are_pruned(
    root, monkeypatch
):
    """QRESYNC's VANISHED (EARLIER): exact while expunge records reach back far enough; once
    older ones were pruned, every UID asked about that is gone (RFC 7162 allows a superset)."""
    from gateway.store import mailstore

    store = MailStore(root)
    inbox = store.folder("INBOX")
    for _ in range(6):
        store.append(inbox, b"Subject: x\r\n\r\n", [])
    store.store_flags(inbox, [2], ["\\Deleted"], "+")
    store.expunge(inbox)
    since = store.folder("INBOX").highestmodseq
    store.store_flags(inbox, [3, 5], ["\\Deleted"], "+")
    store.expunge(inbox)
    inbox = store.folder("INBOX")
    assert store.vanished_since(inbox, since) == [(3, 3), (5, 5)]
    assert store.vanished_since(inbox, since, [(4, 0)]) == [(5, 5)]
    assert store.vanished_since(inbox, 0) == [(2, 3), (5, 5)]
    monkeypatch.setattr(mailstore, "EXPUNGED_KEPT", 1)
    store.store_flags(inbox, [6], ["\\Deleted"], "+")
    store.expunge(inbox)  # prunes the older records
    inbox = store.folder("INBOX")
    assert store.vanished_since(inbox, 0) == [(2, 3), (5, 6)]
    assert store.vanished_since(inbox, 0, [(1, 3)]) == [(2, 3)]
    store.close()
