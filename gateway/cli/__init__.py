"""The `mssgw` command line: one sub-command per object, each in its capability's package.

A capability adds its commands with a `register(subparsers)` function in its own `cli` module,
listed in COMMAND_MODULES. Errors a user can cause (GatewayError) print one line and exit 1;
argparse usage errors exit 2; anything unexpected prints one line too (MSSGW_DEBUG=1 shows the
traceback) and exits 70.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from gateway import __version__
from gateway.config import Config, load_config
from gateway.errors import GatewayError

# Each module has `register(sub: argparse._SubParsersAction) -> None`.
COMMAND_MODULES: list[str] = [
    "gateway.store.cli",
    "gateway.cli.setup",
    "gateway.directory.cli",
    "gateway.directory.trust_cli",
    "gateway.audit_cli",
    "gateway.admins.cli",
    "gateway.pki.cli",
    "gateway.prescriptions.cli",
    "gateway.xdm.cli",
    "gateway.drugs.cli",
    "gateway.documents.cli",
    "gateway.dmp.cli",
    "gateway.ordonnance.cli",
]

Handler = Callable[[argparse.Namespace], int | None]

# --config is accepted before or after the sub-command (`mssgw --config F directory list` and
# `mssgw directory list --config F`); SUPPRESS keeps the later one from erasing the earlier one.
_common = argparse.ArgumentParser(add_help=False)
_common.add_argument(
    "--config",
    metavar="FILE",
    default=argparse.SUPPRESS,
    help="configuration file (default: ./config.toml, or $MSSGW_CONFIG)",
)


def command_group(sub: Any, name: str, help: str) -> Any:
    """Add `mssgw NAME ...` with its own sub-commands; returns the nested subparsers."""
    parser = sub.add_parser(name, help=help, description=help, parents=[_common])
    nested = parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND", required=True)
    return nested


def add_command(
    sub: Any, name: str, help: str, handler: Handler, *, json_output: bool = False
) -> argparse.ArgumentParser:
    """Add one command; `handler(args)` returns an exit code (None means 0)."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=help, description=help, parents=[_common]
    )
    if json_output:
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.set_defaults(handler=handler)
    return parser


def config_of(args: argparse.Namespace) -> Config:
    """The configuration named by --config (or the default)."""
    return load_config(getattr(args, "config", None))


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, ensure_ascii=False, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mssgw",
        description="mssgw — secure health-mail gateway (MSSanté trust space, e-prescription).",
        parents=[_common],
    )
    parser.add_argument("--version", action="version", version=f"mssgw {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.handler(args)
    except GatewayError as exc:
        print(f"mssgw: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        if os.environ.get("MSSGW_DEBUG"):
            raise
        print(
            f"mssgw: internal error: {type(exc).__name__}: {exc} (MSSGW_DEBUG=1 shows details)",
            file=sys.stderr,
        )
        return 70
    return int(code or 0)
