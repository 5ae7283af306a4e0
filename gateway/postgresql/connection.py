"""Connecting to the gateway's PostgreSQL database from the `[storage]` settings.

The DSN names server, port, database and user; the password never sits in config.toml: it is
the first line of `password_file` (0600, like the keys), else $MSSGW_DATABASE_PASSWORD, else
whatever libpq finds itself ($PGPASSWORD, ~/.pgpass). TLS: `sslmode` and `sslrootcert` go to
libpq as they are (`verify-full` checks the server's certificate against that CA and its name).
"""

from __future__ import annotations

import os
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from gateway.config import Config
from gateway.errors import ConfigError, GatewayError

PASSWORD_ENV = "MSSGW_DATABASE_PASSWORD"  # noqa: S105 - the variable's name
APPLICATION = "mssgw"


def conninfo(config: Config) -> str:
    """The libpq connection string of the configured database, password included."""
    s = config.storage
    try:
        params: dict[str, Any] = conninfo_to_dict(s.dsn)
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"config: [storage] dsn is not a PostgreSQL DSN: {exc}") from None
    if s.password_file:
        path = config.path(s.password_file)
        try:
            params["password"] = path.read_text(encoding="utf-8").splitlines()[0]
        except (OSError, IndexError) as exc:
            why = getattr(exc, "strerror", None) or "empty file"
            raise ConfigError(f"config: [storage] password_file {path}: {why}") from None
    elif os.environ.get(PASSWORD_ENV):
        params["password"] = os.environ[PASSWORD_ENV]
    if s.sslmode:
        params["sslmode"] = s.sslmode
    if s.sslrootcert:
        params["sslrootcert"] = str(config.path(s.sslrootcert))
    params.setdefault("application_name", APPLICATION)
    params.setdefault("connect_timeout", 10)
    return make_conninfo(**params)


def where(config: Config) -> str:
    """The database as a user may be told it (no password)."""
    try:
        p = conninfo_to_dict(config.storage.dsn)
    except psycopg.ProgrammingError:
        return "the configured database"
    return f"{p.get('dbname', '?')} on {p.get('host', 'localhost')}:{p.get('port', 5432)}"


def connect(config: Config, **kwargs: Any) -> psycopg.Connection[Any]:
    """A new connection; a refused or unreachable server is one line for the user."""
    try:
        return psycopg.connect(conninfo(config), **kwargs)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GatewayError(f"storage: cannot connect to {where(config)}: {first}") from None
