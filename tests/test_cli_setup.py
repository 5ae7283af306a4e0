import subprocess
import sys


def run(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], capture_output=True, text=True, cwd=cwd
    )


def test_init_is_idempotent(tmp_path):
    (tmp_path / "config.toml").write_text('[gateway]\ndomain = "x.localhost"\n')
    first = run("init", "--config", str(tmp_path / "config.toml"))
    assert first.returncode == 0, first.stderr
    assert "initialised" in first.stdout
    assert (tmp_path / "mailboxes").is_dir()
    second = run("init", "--config", str(tmp_path / "config.toml"))
    assert second.returncode == 0
    assert "nothing to do" in second.stdout


def test_bad_config_is_one_line_error(tmp_path):
    (tmp_path / "config.toml").write_text("[gateway]\ndomian = 'typo'\n")
    r = run("init", "--config", str(tmp_path / "config.toml"))
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0
    assert "unknown key [gateway] domian" in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_config(tmp_path):
    r = run("--config", str(tmp_path / "nope.toml"), "init")
    assert r.returncode == 1
    assert "not found" in r.stderr


def test_help_lists_commands():
    r = run("--help")
    assert r.returncode == 0
    assert "init" in r.stdout and "serve" in r.stdout
