"""The [oidc] section and [auth] password_kinds: what the configuration refuses, and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import Config, load_config
from gateway.errors import ConfigError

GOOD = '[oidc]\nissuer = "https://idp.example"\naudience = "mssgw"\n'


def load_config_text(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return load_config(path)


def test_off_by_default_and_on_with_an_issuer(tmp_path: Path) -> None:
    assert not load_config_text(tmp_path, "").oidc.enabled
    cfg = load_config_text(tmp_path, GOOD)
    assert cfg.oidc.enabled and cfg.oidc.algorithms == ["RS256", "PS256", "ES256"]
    assert cfg.auth.password_kinds == ["PER", "ORG", "APP", "PATIENT"]


@pytest.mark.parametrize("extra, message", [
    ('algorithms = ["RS256", "none"]\n', "'none' is never accepted"),
    ('algorithms = ["HS256"]\n', "'HS256' is never accepted"),
    ('algorithms = ["RS1"]\n', "'RS1' is unknown"),
    ('algorithms = "RS256"\n', "must be a list of strings"),
    ("algorithms = []\n", "at least one algorithm"),
    ("clock_skew = 3600\n", "at most 300"),
    ("introspection = true\n", "needs client_id and client_secret_file"),
    ('tokens = "yes"\n', "unknown key [oidc] tokens"),
])
def test_refused_settings(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config_text(tmp_path, GOOD + extra)


def test_issuer_and_audience(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="https:// URL"):
        load_config_text(tmp_path, '[oidc]\nissuer = "http://idp.example"\naudience = "x"\n')
    with pytest.raises(ConfigError, match="audience is required"):
        load_config_text(tmp_path, '[oidc]\nissuer = "https://idp.example"\n')


def test_password_kinds(tmp_path: Path) -> None:
    cfg = load_config_text(tmp_path, '[auth]\npassword_kinds = ["APP", "PATIENT"]\n')
    assert cfg.auth.password_kinds == ["APP", "PATIENT"]
    with pytest.raises(ConfigError, match="unknown mailbox kind 'DOCTOR'"):
        load_config_text(tmp_path, '[auth]\npassword_kinds = ["DOCTOR"]\n')


def test_an_unreadable_introspection_secret_is_a_config_error(tmp_path: Path) -> None:
    from gateway.oidc.provider import Provider

    cfg = load_config_text(tmp_path, GOOD + 'introspection = true\nclient_id = "mssgw"\n'
                           'client_secret_file = "missing.secret"\n')
    with pytest.raises(ConfigError, match="client_secret_file .*missing.secret"):
        Provider.from_config(cfg)
    (tmp_path / "missing.secret").write_text("s3cret-value\n")
    assert Provider.from_config(cfg).client_secret == "s3cret-value"
