"""Fixtures shared by every test module.

`shared_dir` locates the official reference material (../shared or $MSSGW_SHARED): a test that
needs it skips with a reason when it is absent, and fails instead when CI=true.
`gateway_home` is a fresh, initialised gateway in a temporary folder with its own config.toml.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() == "true"


def require(condition: bool, reason: str) -> None:
    """Skip with `reason` when `condition` is false; under CI=true fail instead."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required under CI=true: {reason}")
    pytest.skip(reason)


def require_tool(name: str) -> str:
    path = shutil.which(name)
    require(path is not None, f"{name} is not installed (Debian package; `make test` installs it)")
    assert path is not None
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    path = Path(os.environ.get("MSSGW_SHARED", ROOT.parent / "shared")).resolve()
    require(path.is_dir(), f"reference material not found at {path} (set MSSGW_SHARED)")
    return path


@pytest.fixture
def gateway_home(tmp_path: Path) -> Path:
    """An initialised gateway home: config.toml pointing at folders under tmp_path."""
    from gateway.cli import main

    home = tmp_path / "gw"
    home.mkdir()
    shared = Path(os.environ.get("MSSGW_SHARED", ROOT.parent / "shared")).resolve()
    (home / "config.toml").write_text(
        "[gateway]\n"
        'domain = "test.localhost"\n'
        'hostname = "mx.test.localhost"\n'
        "workers = 1\n"
        "[documents]\n"
        f'cda_schema = "{shared}/ci-sis/infrastructure/cda/CDA_extended.xsd"\n'
        f'schematron_dir = "{shared}/ci-sis/schematrons"\n'
    )
    assert main(["init", "--config", str(home / "config.toml")]) == 0
    return home
