"""The `mssgw` command line: one sub-command per object, each in its capability's package.

A capability adds its commands with a `register(subparsers)` function in its own `cli` module,
listed in `_registrars()`. A command gets the process's root (`gateway.runtime.Runtime`, built
once per command, closed when it ends) from `runtime_of(args)`, and the stores from it.
Errors a user can cause (GatewayError) print one line and exit 1; argparse usage errors exit 2;
anything unexpected prints one line too (MSSGW_DEBUG=1 shows the traceback) and exits 70.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from gateway import __version__
from gateway.config import Config, load_config
from gateway.errors import GatewayError

if TYPE_CHECKING:
    from gateway.runtime import Runtime

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


def runtime_of(args: argparse.Namespace) -> Runtime:
    """The command's root: built once, from the configuration, on first use; changes are
    audited under the local OS user. `main` closes it when the command ends."""
    runtime: Runtime | None = getattr(args, "_runtime", None)
    if runtime is None:
        from gateway.audit import local_actor
        from gateway.runtime import Runtime

        runtime = Runtime(config_of(args), actor=local_actor())
        args._runtime = runtime
    return runtime


Register = Callable[[Any], None]  # `register(sub: argparse._SubParsersAction) -> None`


def _registrars() -> tuple[Register, ...]:
    """Each capability's `register`, in the order of `mssgw --help`. Imported here, not at the
    top: the `cli` modules import this one."""
    from gateway import audit_cli
    from gateway.admins import cli as admins_cli
    from gateway.cli import setup
    from gateway.directory import cli as directory_cli
    from gateway.directory import trust_cli
    from gateway.dmp import cli as dmp_cli
    from gateway.documents import cli as documents_cli
    from gateway.drugs import cli as drugs_cli
    from gateway.oidc import cli as oidc_cli
    from gateway.ordonnance import cli as ordonnance_cli
    from gateway.pki import cli as pki_cli
    from gateway.prescriptions import cli as prescriptions_cli
    from gateway.store import cli as store_cli
    from gateway.xdm import cli as xdm_cli

    return (
        store_cli.register,
        setup.register,
        directory_cli.register,
        trust_cli.register,
        audit_cli.register,
        admins_cli.register,
        pki_cli.register,
        prescriptions_cli.register,
        xdm_cli.register,
        drugs_cli.register,
        documents_cli.register,
        dmp_cli.register,
        ordonnance_cli.register,
        oidc_cli.register,
    )


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
    for register in _registrars():
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _run(args)
    finally:
        runtime = getattr(args, "_runtime", None)
        if runtime is not None:
            with contextlib.suppress(Exception):  # the command's outcome is already told
                runtime.close()


def _run(args: argparse.Namespace) -> int:
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
