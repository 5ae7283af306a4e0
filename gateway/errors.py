"""Errors a user may cause. Their text is shown as-is, on one line, without a traceback."""

from __future__ import annotations


class GatewayError(Exception):
    """Bad input or a refused operation: the CLI prints it on one line and exits non-zero."""

    exit_code = 1


class InvalidIdentifier(GatewayError):
    """An identifier (RPPS, INS, FINESS, CIS...) that breaks its rule. Names the field and rule."""

    def __init__(self, field: str, value: str, rule: str) -> None:
        self.field = field
        self.value = value
        self.rule = rule
        super().__init__(f"{field}: {value!r} is invalid: {rule}")


class NotFound(GatewayError):
    """The named object (mailbox, domain, certificate...) does not exist."""


class Conflict(GatewayError):
    """The object already exists, or the change clashes with the current state."""


class ConfigError(GatewayError):
    """config.toml is missing, unreadable or holds a value that makes no sense."""
