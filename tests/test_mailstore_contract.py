"""The `MailStore` / `MailStores` / `Intake` contract (gateway/store/interfaces.py) for each
storage backend (tests/conftest.py STORAGE_BACKENDS), as the IMAP sessions and the SMTP
delivery use them: delivery, UIDs, flags, MODSEQ, expunges, folders, subscriptions, and the
changes another process (or another gateway) on the same store made."""

from __future__ import annotations

import pytest

from gateway.runtime import storage_for
from gateway.store.interfaces import StoreError

USER = "dr.martin@test.localhost"


def message(subject: str, body: str = "Bonjour.") -> bytes:
    return (f"From: a@test.localhost\r\nTo: {USER}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@test>\r\n\r\n{body}\r\n").encode()


@pytest.fixture
def stores(storage):
    s = storage.mail_stores()
    yield s
    s.close()


@pytest.fixture
def store(stores):
    s = stores.acquire(USER)
    yield s
    stores.release(USER)


@pytest.fixture
def other(storage):
    """The user's store as another process or gateway opens it."""
    stores = storage_for(storage.config).mail_stores()
    yield stores.acquire(USER)
    stores.release(USER)
    stores.close()


@pytest.fixture
async def intake(storage):
    i = storage.intake()
    yield i
    i.close()


def settle(store, folder) -> None:
    """What a session does after each command: index what was delivered meanwhile."""
    names = store.arrivals(folder)
    if names:
        store.adopt(folder, names)


async def test_deliveries_get_ascending_uids_and_their_octets(store, intake):
    await intake.commit([(USER, message("one")), (USER, message("two"))])
    await intake.commit([(USER, message("three", "bare\nline ends\n"))])
    inbox = store.folder("INBOX")
    settle(store, inbox)
    view = store.view(inbox)
    assert view.uids == [1, 2, 3] and view.flags == {}
    infos = store.infos(inbox, view.uids)
    third = store.read(inbox, infos[3].base)
    assert b"Subject: three" in third and b"bare\r\nline ends\r\n" in third  # CRLF, as IMAP sends
    assert infos[3].size == len(third)
    assert store.read_file(inbox, infos[1].base) == message("one")
    assert store.counts(inbox) == (3, 3, 3)
    assert store.folder("INBOX").uidnext == 4


def test_default_folders_and_special_use(store):
    assert {f.name: f.special_use for f in store.folders()} == {
        "INBOX": None, "Sent": "\\Sent", "Drafts": "\\Drafts", "Trash": "\\Trash"}
    assert {"INBOX", "Sent", "Drafts", "Trash"} <= store.subscriptions()


def test_append_flags_and_modseq(store):
    inbox = store.folder("INBOX")
    uid = store.append(inbox, message("appended"), ["\\Seen", "$Important"], 1_700_000_000, 60)
    info = store.infos(inbox, [uid])[uid]
    assert set(info.flags) == {"\\Seen", "$Important"}
    assert info.internaldate == 1_700_000_000 and info.tz == 60
    assert "$Important" in store.folder("INBOX").keywords
    before = store.folder("INBOX").highestmodseq
    changed, failed = store.store_flags(inbox, [uid], ["\\Flagged"], "+")
    assert failed == [] and changed[0][0] == uid and "\\Flagged" in changed[0][1]
    assert changed[0][2] > before == info.modseq
    changed, failed = store.store_flags(inbox, [uid], ["\\Seen"], "-", unchangedsince=before)
    assert changed == [] and failed == [uid]  # CONDSTORE: changed since
    changed, _ = store.store_flags(inbox, [uid], ["\\Draft"], "")
    assert changed[0][1] == ("\\Draft",)


def test_another_process_sees_arrivals_flags_and_expunges(store, other):
    inbox = store.folder("INBOX")
    a = store.append(inbox, message("a"), [])
    b = store.append(inbox, message("b"), [])
    seen = other.folder("INBOX")
    view = other.view(seen)
    assert view.uids == [a, b]
    c = store.append(inbox, message("c"), [])
    store.store_flags(inbox, [a], ["\\Deleted"], "+")
    store.store_flags(inbox, [b], ["\\Seen"], "+")
    assert store.expunge(inbox) == [a]
    changes = other.changes_since(seen, view.modseq, last_uid=b)
    assert changes is not None
    assert changes.new_uids == [c] and changes.expunged == [a]
    assert [(u, f) for u, f, _ in changes.changed] == [(b, ("\\Seen",))]
    assert other.view(seen).uids == [b, c]
    assert other.vanished_since(seen, view.modseq) == [(a, a)]
    cleanup = store.cleanup()
    if cleanup is not None:
        cleanup()  # what the session runs in a worker thread
    assert store.read(inbox, store.infos(inbox, [b])[b].base).startswith(b"From:")


def test_concurrent_writers_get_unique_ascending_uids(store, other):
    inbox, theirs = store.folder("INBOX"), other.folder("INBOX")
    uids = []
    for i in range(6):
        writer, folder = (store, inbox) if i % 2 else (other, theirs)
        uids.append(writer.append(folder, message(f"m{i}"), []))
    assert uids == sorted(uids) and len(set(uids)) == 6
    assert store.view(inbox).uids == uids


def test_remove_copy_and_recent(store):
    inbox = store.folder("INBOX")
    uids = [store.append(inbox, message(f"m{i}"), ["\\Seen"] if i else []) for i in range(3)]
    store.create_folder("Archive")
    archive = store.folder("Archive")
    pairs = store.copy(inbox, uids[:2], archive)
    assert [src for src, _ in pairs] == uids[:2]
    assert [dst for _, dst in pairs] == [1, 2]  # the destination's own UIDs
    assert store.infos(archive, [2])[2].flags == ("\\Seen",)
    store.remove(inbox, uids[:2])  # MOVE's second half, whatever the flags
    assert store.view(inbox).uids == [uids[2]]
    assert store.peek_recent(archive) == {1, 2}
    assert store.claim_recent(archive) == {1, 2}
    assert store.claim_recent(archive) == set() and store.peek_recent(archive) == set()


def test_folders_rename_delete_and_subscriptions(store):
    store.create_folder("Projets/2026")  # the parent too
    assert {"Projets", "Projets/2026"} <= {f.name for f in store.folders()}
    with pytest.raises(StoreError) as exc:
        store.create_folder("Projets")
    assert exc.value.code == "ALREADYEXISTS"
    store.subscribe("Projets/2026", True)
    old = store.folder("Projets/2026")
    store.rename_folder("Projets", "Travail")
    renamed = store.folder("Travail/2026")
    assert renamed is not None and renamed.id == old.id and store.folder("Projets") is None
    assert "Travail/2026" in store.subscriptions()
    with pytest.raises(StoreError):
        store.delete_folder("Travail")  # has a sub-folder
    store.delete_folder("Travail/2026")
    assert "Travail/2026" in store.subscriptions()  # a subscription outlives DELETE
    assert store.changes_since(renamed, 0, 0) is None  # gone for a session that had it
    with pytest.raises(StoreError) as exc:
        store.subscribe("Nowhere", True)
    assert exc.value.code == "NONEXISTENT"


def test_cached_structure_and_sort_keys(store):
    inbox = store.folder("INBOX")
    uid = store.append(inbox, message("Re: hello"), [])
    assert store.cached(inbox, [uid]) == {uid: (None, None)}
    store.set_cached(inbox, [(uid, b"(envelope)", b"(body)")])
    assert store.cached(inbox, [uid]) == {uid: (b"(envelope)", b"(body)")}
    keys = store.sort_keys(inbox, [uid])
    assert keys[uid].subject == "HELLO" and keys[uid].reply
    assert keys[uid].message_id == "Re:.hello@test"
    # sort_values: one key per message, only what SORT's criteria name
    other = store.append(inbox, message("abc", "longer body"), [], 1_000_000)
    assert store.sort_values(inbox, [uid, other], "subject") == {uid: "HELLO", other: "ABC"}
    assert store.sort_values(inbox, [other], "internaldate") == {other: 1_000_000}
    sizes = store.sort_values(inbox, [uid, other], "size")
    assert sizes[other] == len(message("abc", "longer body"))
    with pytest.raises(ValueError):
        store.sort_values(inbox, [uid], "flags")
    # thread_keys: THREAD=REFERENCES's row per message
    reply = store.append(inbox, b"Message-ID: <r@test>\r\nReferences: <a@test>\r\n <b@test>"
                         b"\r\nSubject: Fwd: abc\r\nDate: Thu, 1 Jan 2026 00:00:00 +0000\r\n"
                         b"\r\nx\r\n", [])
    rows = store.thread_keys(inbox, [uid, reply, 999])
    assert rows[reply] == (reply, 1_767_225_600, "ABC", 1, "r@test", "a@test b@test")
    assert rows[uid][4:] == ("Re:.hello@test", "") and set(rows) == {uid, reply}


def test_append_to_a_deleted_folder_says_trycreate(store):
    store.create_folder("Tmp")
    tmp = store.folder("Tmp")
    store.delete_folder("Tmp")
    with pytest.raises(StoreError) as exc:
        store.append(tmp, message("late"), [])
    assert exc.value.code == "TRYCREATE"
