"""Errors a user may cause. Their text is shown as-is, on one line, without a traceback.

The message is English (the CLI and the API say it as it is); it is a `gateway.texts.Text`, so
the French console can say the same thing from its own template (gateway/french.py).
"""

from __future__ import annotations

from gateway.texts import Text, t, text_of


class GatewayError(Exception):
    """Bad input or a refused operation: the CLI prints it on one line and exits non-zero."""

    exit_code = 1

    def __init__(self, *args: object) -> None:
        if len(args) == 1 and isinstance(args[0], str):
            args = (text_of(args[0]),)  # a literal: its own template
        super().__init__(*args)

    @property
    def text(self) -> Text:
        """The message, with its template and parameters."""
        return text_of(self.args[0] if self.args else str(self))


class InvalidIdentifier(GatewayError):
    """An identifier (RPPS, INS, FINESS, CIS...) that breaks its rule. Names the field and rule."""

    def __init__(self, field: str, value: str, rule: str) -> None:
        self.field = field
        self.value = value
        self.rule = rule
        super().__init__(t("{field}: {value!r} is invalid: {rule}", field=field, value=value,
                           rule=text_of(rule)))


class NotFound(GatewayError):
    """The named object (mailbox, domain, certificate...) does not exist."""


class Conflict(GatewayError):
    """The object already exists, or the change clashes with the current state."""


class ConfigError(GatewayError):
    """config.toml is missing, unreadable or holds a value that makes no sense."""
