"""`mssgw queue list|show|retry|delete`: the outbound queue, for administrators."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.admins.model import Caller
from gateway.audit import local_actor
from gateway.cli import add_command, command_group, print_json, runtime_of
from gateway.errors import Conflict
from gateway.store.admin import QueueService, summary, when
from gateway.store.queue import PENDING


def _service(args: argparse.Namespace) -> QueueService:
    rt = runtime_of(args)
    return QueueService(
        rt.config, rt.outbound_queue, rt.audit.record, Caller.local(local_actor()),
        intake=rt.intake,
    )


def cmd_list(args: argparse.Namespace) -> int:
    records = _service(args).records()
    if args.json:
        print_json([summary(r) for r in records])
        return 0
    if not records:
        print("the queue is empty")
        return 0
    for r in records:
        pending = [x for x in r.recipients if x.state == PENDING]
        last = next((x.last_error for x in pending if x.last_error), None)
        print(
            f"{r.id}  {when(r.created)}  <{r.sender}>  {len(pending)} pending: "
            + ", ".join(x.address for x in pending)
            + f"  next {when(r.next_attempt) or '-'}"
            + (f"  ({last})" if last else "")
        )
    print(f"{len(records)} message(s) in the queue")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    service = _service(args)
    record, header = service.show(args.id)
    size = service.size(record.id)
    s = summary(record)
    if args.json:
        s["size"] = size
        s["headers"] = header.decode("utf-8", "replace")
        print_json(s)
        return 0
    print(f"id: {s['id']} ({s['kind']})")
    print(f"sender: <{s['sender']}>")
    print(f"created: {s['created']} ({s['age_seconds']} s ago), size {size} bytes")
    for x in s["recipients"]:
        line = f"  <{x['address']}>: {x['state']}, {x['attempts']} attempt(s)"
        if x["next_attempt"]:
            line += f", next {x['next_attempt']}"
        if x["last_error"]:
            line += f"; last: {x['last_error']}"
        print(line)
    print()
    print(header.decode("utf-8", "replace"))
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    if not args.id and not args.all:
        raise Conflict("queue retry: give a queue id, or --all")
    ids = _service(args).retry(None if args.all else args.id)
    if not ids:
        print("the queue is empty")
    for qid in ids:
        print(f"{qid}: will be retried at the next queue scan")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    print(f"{_service(args).delete(args.id)}: deleted from the queue (no DSN sent)")
    return 0


def cmd_bounce(args: argparse.Namespace) -> int:
    qid = _service(args).bounce(args.id)
    print(f"{qid}: returned to its sender with a delivery status notification, and removed")
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
    p = add_command(
        group, "bounce", "return a queued message to its sender (with a DSN) and remove it",
        cmd_bounce,
    )
    p.add_argument("id", help="queue id")
