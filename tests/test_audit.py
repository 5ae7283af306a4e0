"""The audit log: JSON lines, 0600, one entry per change, readable back."""

from __future__ import annotations

import json
import stat

from gateway import audit
from gateway.config import load_config


def test_record_and_read(gateway_home):
    config = load_config(gateway_home / "config.toml")
    audit.record(config, "alice", "dmp.read", "279035121518989", document="doc-1")
    audit.record(config, "bob", "directory.add", "x@test.localhost", kind="APP")
    path = config.audit_log_path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = path.read_text().splitlines()
    first = json.loads(lines[-2])
    assert first["actor"] == "alice" and first["action"] == "dmp.read"
    assert first["target"] == "279035121518989" and first["details"] == {"document": "doc-1"}
    assert first["at"].endswith("+00:00")
    reads = list(audit.read(config, action="dmp.read"))
    assert [(e.actor, e.target) for e in reads] == [("alice", "279035121518989")]
    assert [e.actor for e in audit.read(config, action="directory.")][-1] == "bob"
    assert [e.action for e in audit.read(config, target="x@test.localhost")] == ["directory.add"]


def test_reader_skips_a_torn_line(gateway_home):
    config = load_config(gateway_home / "config.toml")
    audit.record(config, "alice", "a.b", "t")
    with config.audit_log_path.open("a") as f:
        f.write('{"at": "2026-')  # a crash in the middle of a write
    assert [e.action for e in audit.read(config)][-1] == "a.b"


def test_init_registers_own_domains_in_audit(gateway_home):
    config = load_config(gateway_home / "config.toml")
    targets = [e.target for e in audit.read(config, action="trust.add-domain")]
    assert targets == ["test.localhost", "patient.test.localhost"]


def test_audit_list_command(gateway_home, capsys):
    from gateway.cli import main

    config_arg = ["--config", str(gateway_home / "config.toml")]
    config = load_config(gateway_home / "config.toml")
    audit.record(config, "alice", "dmp.read", "279035121518989", document="doc-1")
    audit.record(config, "bob", "directory.add", "x@test.localhost")
    capsys.readouterr()
    assert main(["audit", "list", "--action", "dmp.", *config_arg]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "alice  dmp.read  279035121518989" in out
    assert main(["audit", "list", "--actor", "bob", "--json", *config_arg]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["target"] == "x@test.localhost"
    assert main(["audit", "list", "--last", "1", *config_arg]) == 0
    assert "directory.add" in capsys.readouterr().out
    assert main(["audit", "list", "--since", "2999-01-01", *config_arg]) == 0
    assert capsys.readouterr().out == ""
    assert main(["audit", "list", "--since", "yesterday", *config_arg]) == 1
    assert "since: 'yesterday' is invalid" in capsys.readouterr().err


def test_held_entries_are_written_together_even_on_failure(tmp_path, monkeypatch):
    import os

    import pytest

    path = tmp_path / "audit.log"
    log = audit.Batched(path)
    syncs: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(audit.os, "fsync", lambda fd: (syncs.append(fd), real_fsync(fd)))
    log("gateway", "prescription.register", "ID1", {"lines": 2})  # not held: at once
    assert len(path.read_text().splitlines()) == 1 and len(syncs) == 1
    with log.held():
        log("dr@x", "prescription.register", "ID2", {"lines": 1})
        with log.held():  # nested: still one write
            log("gateway", "dmp.submit", "2.25.1", {"outcome": "filed"})
        assert len(path.read_text().splitlines()) == 1  # nothing written yet
    assert len(syncs) == 2
    with pytest.raises(RuntimeError), log.held():
        log("ph@x", "prescription.dispense", "ID2", {"outcome": "refused"})
        raise RuntimeError("the transaction failed")
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(e["action"], e["target"]) for e in entries] == [
        ("prescription.register", "ID1"), ("prescription.register", "ID2"),
        ("dmp.submit", "2.25.1"), ("prescription.dispense", "ID2")]
    assert len(syncs) == 3


def test_the_index_follows_the_log_through_torn_lines_rotation_and_loss(tmp_path):
    """The embedded log's index (a cache beside it, `<log>.index`) indexes whole lines only,
    skips a line torn by a crash, starts again when the log is replaced, is 0600, and losing
    it loses nothing."""
    import os
    import threading

    from gateway.audit import AuditFile, AuditFilter

    path = tmp_path / "audit.log"
    log = AuditFile(path)
    assert log.query(AuditFilter(), limit=5) == ([], 0)  # no log yet
    for i in range(3):
        log.record("gateway", "a.b", f"t{i}", {})
    assert [e.target for e in log.query(AuditFilter(), limit=5)[0]] == ["t2", "t1", "t0"]
    index = path.with_name("audit.log.index")
    assert stat.S_IMODE(index.stat().st_mode) == 0o600
    # A line being written (no newline yet) is left for the next query.
    with path.open("ab") as f:
        f.write(b'{"actor": "gateway", "action": "a.b", "target": "t3", "details": {}, ')
    assert log.query(AuditFilter(), limit=5)[1] == 3
    with path.open("ab") as f:
        f.write(b'"at": "2026-03-01T12:00:00+00:00"}\n')
    assert [e.target for e in log.query(AuditFilter(), limit=2)[0]] == ["t3", "t2"]
    # A line torn by a crash (the next entry written after it, on the same line) is skipped,
    # as `read()` skips it.
    with path.open("ab") as f:
        f.write(b'{"at": "2026-')
    log.record("gateway", "a.b", "t4", {})
    log.record("gateway", "a.b", "t5", {})
    found = [e.target for e in log.query(AuditFilter(), limit=10)[0]]
    assert found == ["t5", "t3", "t2", "t1", "t0"] == [e.target for e in log.read()][::-1]
    # Another log at the path (rotated): indexed from its start.
    os.rename(path, tmp_path / "audit.log.1")
    log.record("gateway", "c.d", "u0", {})
    assert log.query(AuditFilter(), limit=10) == (list(log.read()), 1)
    # The index lost: made again from the log.
    log.close()
    index.unlink()
    assert [e.target for e in AuditFile(path).query(AuditFilter(), limit=10)[0]] == ["u0"]
    # Workers catching up at the same moment index each line once.
    for i in range(200):
        log.record("gateway", "e.f", f"v{i}", {})
    logs = [AuditFile(path) for _ in range(4)]
    threads = [threading.Thread(target=x.query, args=(AuditFilter(),)) for x in logs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [x.query(AuditFilter(action="e.f"), limit=1)[1] for x in logs] == [200] * 4
    for x in logs:
        x.close()
