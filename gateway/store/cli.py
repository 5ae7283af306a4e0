"""`mssgw queue list|show|retry|delete`: the outbound queue, for administrators."""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from typing import Any

from gateway.cli import add_command, command_group, print_json, runtime_of
from gateway.errors import Conflict
from gateway.store.interfaces import OutboundQueue, Record
from gateway.store.queue import PENDING, check_id

LOCK_WAIT = 10.0  # seconds to wait for the delivery worker to release an entry


def _queue(args: argparse.Namespace) -> OutboundQueue:
    return runtime_of(args).outbound_queue


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _summary(r: Record) -> dict[str, Any]:
    return {
        "id": r.id,
        "kind": r.kind,
        "sender": r.sender,
        "created": _when(r.created),
        "age_seconds": int(time.time() - r.created),
        "next_attempt": _when(r.next_attempt),
        "recipients": [
            {
                "address": x.address,
                "state": x.state,
                "attempts": x.attempts,
                "next_attempt": _when(x.next_attempt) if x.state == PENDING else None,
                "last_error": x.last_error,
                "status": x.status,
                "remote_mta": x.remote_mta,
            }
            for x in r.recipients
        ],
    }


def cmd_list(args: argparse.Namespace) -> int:
    records = _queue(args).records()
    if args.json:
        print_json([_summary(r) for r in records])
        return 0
    if not records:
        print("the queue is empty")
        return 0
    for r in records:
        pending = [x for x in r.recipients if x.state == PENDING]
        last = next((x.last_error for x in pending if x.last_error), None)
        print(
            f"{r.id}  {_when(r.created)}  <{r.sender}>  {len(pending)} pending: "
            + ", ".join(x.address for x in pending)
            + f"  next {_when(r.next_attempt)}"
            + (f"  ({last})" if last else "")
        )
    print(f"{len(records)} message(s) in the queue")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    q = _queue(args)
    record = q.load(args.id)
    data = q.message(record.id)
    if args.json:
        out = _summary(record)
        out["size"] = len(data)
        out["headers"] = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
        print_json(out)
        return 0
    s = _summary(record)
    print(f"id: {s['id']} ({s['kind']})")
    print(f"sender: <{s['sender']}>")
    print(f"created: {s['created']} ({s['age_seconds']} s ago), size {len(data)} bytes")
    for x in s["recipients"]:
        line = f"  <{x['address']}>: {x['state']}, {x['attempts']} attempt(s)"
        if x["next_attempt"]:
            line += f", next {x['next_attempt']}"
        if x["last_error"]:
            line += f"; last: {x['last_error']}"
        print(line)
    print()
    print(data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace"))
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    q = _queue(args)
    ids = q.ids() if args.all else [check_id(args.id or "")] if args.id else []
    if not ids:
        if not args.all:
            raise Conflict("queue retry: give a queue id, or --all")
        print("the queue is empty")
        return 0
    for qid in ids:
        q.load(qid)  # NotFound names the id
        with q.locked(qid, wait=LOCK_WAIT) as held:
            if not held:
                raise Conflict(f"queue: {qid} is being delivered right now; try again")
            record = q.load(qid)
            for x in record.recipients:
                if x.state == PENDING:
                    x.next_attempt = 0.0
            q.save(record)
        print(f"{qid}: will be retried at the next queue scan")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    q = _queue(args)
    qid = check_id(args.id)
    q.load(qid)
    with q.locked(qid, wait=LOCK_WAIT) as held:
        if not held:
            raise Conflict(f"queue: {qid} is being delivered right now; try again")
        q.remove(qid)
    print(f"{qid}: deleted from the queue (no DSN sent)")
    return 0


def register(sub: Any) -> None:
    group = command_group(sub, "queue", "the outbound queue (mail for other operators)")
    add_command(group, "list", "list queued messages", cmd_list, json_output=True)
    p = add_command(group, "show", "show one queued message", cmd_show, json_output=True)
    p.add_argument("id", help="queue id (from `mssgw queue list` or the logs)")
    p = add_command(group, "retry", "retry a queued message now", cmd_retry)
    p.add_argument("id", nargs="?", help="queue id")
    p.add_argument("--all", action="store_true", help="retry every queued message")
    p = add_command(group, "delete", "delete a queued message (no DSN is sent)", cmd_delete)
    p.add_argument("id", help="queue id")
