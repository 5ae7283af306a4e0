"""Drive `mssgw` in-process for the directory/trust tests (gateway.cli.main, real database)."""

from __future__ import annotations

import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.cli import main


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


class Cli:
    def __init__(self, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.home = home
        self.config = str(home / "config.toml")
        self.capsys = capsys

    def __call__(self, *args: str, stdin: str | None = None) -> Result:
        self.capsys.readouterr()
        old = sys.stdin
        if stdin is not None:
            sys.stdin = io.StringIO(stdin)
        try:
            code = main([*args, "--config", self.config])
        finally:
            sys.stdin = old
        out, err = self.capsys.readouterr()
        return Result(code, out, err)

    def ok(self, *args: str, stdin: str | None = None) -> Result:
        r = self(*args, stdin=stdin)
        assert r.code == 0, r.err
        return r

    def fails(self, *args: str, match: str, stdin: str | None = None) -> Result:
        """The command fails with one line on stderr containing `match`, and changes nothing."""
        before = self.snapshot()
        r = self(*args, stdin=stdin)
        assert r.code == 1, (r.code, r.out, r.err)
        assert r.err.startswith("mssgw: error: "), r.err
        assert r.err.strip().count("\n") == 0, r.err
        assert "Traceback" not in r.err
        assert match in r.err, r.err
        assert self.snapshot() == before, "a refused command changed the directory"
        return r

    def snapshot(self) -> tuple[str, str, str]:
        self.capsys.readouterr()
        main(["directory", "list", "--json", "--config", self.config])
        mailboxes = self.capsys.readouterr().out
        main(["trust", "list", "--json", "--config", self.config])
        domains = self.capsys.readouterr().out
        main(["directory", "list-remote", "--json", "--limit", "0", "--config", self.config])
        remote = self.capsys.readouterr().out
        return mailboxes, domains, remote
