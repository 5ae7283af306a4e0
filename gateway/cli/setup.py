"""`mssgw init` and `mssgw serve`: bring a gateway home to life, then run its listeners.

`init` runs every capability's initialise step in order, with the command's root. A step
returns the lines describing what it created; it must be idempotent (a second run creates
nothing and returns no lines), so a second `mssgw init` changes nothing and says so.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from gateway.admins import demo as admins_demo
from gateway.cli import add_command, runtime_of
from gateway.directory import demo as directory_demo
from gateway.directory import setup as directory_setup
from gateway.pki import ca as pki_ca
from gateway.pki import demo as pki_demo
from gateway.runtime import Runtime

InitStep = Callable[[Runtime], list[str]]


def _storage(runtime: Runtime) -> list[str]:
    """The backend's own step: folders (embedded), schema."""
    return runtime.storage.initialise()


def _pki(runtime: Runtime) -> list[str]:
    return pki_ca.initialise(runtime.config)


# Run in this order by `mssgw init`.
INIT_STEPS: tuple[InitStep, ...] = (
    _storage,
    directory_setup.initialise,
    _pki,
)

# Run after them by `mssgw init --demo`: the demo population, then what it needs (e.g. its
# certificates).
DEMO_STEPS: tuple[InitStep, ...] = (
    directory_demo.register,
    pki_demo.issue_certificates,
    admins_demo.register,
)


def cmd_init(args: argparse.Namespace) -> int:
    runtime = runtime_of(args)
    done: list[str] = []
    for step in INIT_STEPS + (DEMO_STEPS if args.demo else ()):
        done += step(runtime)
    if done:
        for line in done:
            print(line)
        print(f"initialised the gateway in {runtime.config.home}")
    else:
        print(f"already initialised in {runtime.config.home}: nothing to do")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.cli import config_of
    from gateway.pki.store import fetch_files
    from gateway.server import serve

    config = config_of(args)
    fetch_files(config)  # certificates another node issued (a shared database)
    return serve(config)


def cmd_backup(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gateway.backup import backup
    from gateway.cli import config_of

    for line in backup(config_of(args), Path(args.folder)):
        print(line)
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gateway.backup import restore
    from gateway.cli import config_of

    for line in restore(config_of(args), Path(args.folder)):
        print(line)
    print("restored: run `mssgw init` (it changes nothing it finds), then `mssgw serve`")
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    """Ask the running gateway whether it is ready (its /readyz), or run the same checks here
    when it has no HTTPS listener; exit 0 when ready, 1 when not (a container's HEALTHCHECK,
    a monitoring probe, an operator after an upgrade)."""
    from gateway.cli import config_of, print_json
    from gateway.systemd import probe

    ready, checks = probe(config_of(args), timeout=args.timeout, address=args.address)
    if args.json:
        print_json({"ready": ready, "checks": checks})
    else:
        for name, check in checks.items():
            print(f"{'ok' if check.get('ok') else 'FAILED':6} {name}: {check.get('detail')}")
        print("ready" if ready else "NOT ready")
    return 0 if ready else 1


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
    p = add_command(sub, "backup", "copy the gateway's state (database, mail, certificates) "
                    "into an empty folder, while it runs", cmd_backup)
    p.add_argument("folder", help="where to write the backup (must not exist, or be empty)")
    p = add_command(sub, "restore", "bring an empty installation back from a backup",
                    cmd_restore)
    p.add_argument("folder", help="a folder written by `mssgw backup`")
    p = add_command(sub, "health", "is the running gateway ready? (exit 0 when it is)",
                    cmd_health, json_output=True)
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                   help="how long to wait for the gateway's answer (default 10)")
    p.add_argument("--address", metavar="HOST:PORT",
                   help="where the HTTPS listener answers, when not at [http] listen")
