"""`mssgw init` and `mssgw serve`: bring a gateway home to life, then run its listeners.

`init` runs every capability's initialise step in order. A step takes the configuration and
returns the lines describing what it created; it must be idempotent (a second run creates nothing
and returns no lines), so a second `mssgw init` changes nothing and says so.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import Any

from gateway.cli import add_command, config_of
from gateway.config import Config

# "module:function", each `(config: Config) -> list[str]`, run in this order.
INIT_STEPS: list[str] = [
    "gateway.storage_layout:initialise",
    "gateway.directory.setup:initialise",
    "gateway.pki.ca:initialise",
]

# Registers the demo population; `(config: Config) -> list[str]` (empty when already there).
DEMO_STEP: str | None = "gateway.directory.demo:register"
# Further demo steps, run after DEMO_STEP, same signature (e.g. the demo's certificates).
DEMO_EXTRA_STEPS: list[str] = [
    "gateway.pki.demo:issue_certificates",
    "gateway.admins.demo:register",
]


def _resolve(spec: str) -> Callable[[Config], list[str]]:
    module, _, func = spec.partition(":")
    fn: Callable[[Config], list[str]] = getattr(importlib.import_module(module), func)
    return fn


def cmd_init(args: argparse.Namespace) -> int:
    config = config_of(args)
    done: list[str] = []
    for spec in INIT_STEPS:
        done += _resolve(spec)(config)
    if args.demo and DEMO_STEP:
        done += _resolve(DEMO_STEP)(config)
        for spec in DEMO_EXTRA_STEPS:
            done += _resolve(spec)(config)
    if done:
        for line in done:
            print(line)
        print(f"initialised the gateway in {config.home}")
    else:
        print(f"already initialised in {config.home}: nothing to do")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.server import serve

    return serve(config_of(args))


def register(sub: Any) -> None:
    p = add_command(
        sub, "init", "initialise the gateway described by the configuration (idempotent)", cmd_init
    )
    p.add_argument(
        "--demo",
        action="store_true",
        help="also register the demo population (doctor, pharmacy, patient, robot)",
    )
    add_command(sub, "serve", "run every configured listener until interrupted", cmd_serve)
