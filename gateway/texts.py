"""Messages that can be said in another language: the rules are written once, in English.

Every refusal is a `GatewayError` whose message names the field and the rule, in English: the
command line prints it, the REST API returns it (scripts and logs read English). The web
console is French, for its users. So that it needs no rules of its own, a message is built as
a `Text`: the English string itself (a `str`: every caller, test and log line sees English as
before), which also remembers its template and parameters, so a face can render the same
message from another language's template (`gateway.french`).

    raise InvalidField("days", value, t("at most {n} days", n=limit))

A literal message needs no marking (`GatewayError("update: nothing to change")` keeps the
literal as its template); a message built from values must use `t()` with named parameters,
never an f-string, or no other language can say it (tests/test_messages.py checks both). A
parameter may itself be a Text (a rule inside "{field}: {value!r} is invalid: {rule}").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class Text(str):
    """An English message that remembers its `template` and `params`."""

    template: str
    params: dict[str, Any]

    def __new__(cls, template: str, params: Mapping[str, Any] | None = None) -> Text:
        values = dict(params or {})
        obj = super().__new__(cls, template.format(**values) if values else template)
        obj.template = template
        obj.params = values
        return obj

    def __reduce__(self) -> tuple[Any, ...]:  # pickled (pool processes) with its template
        return (Text, (self.template, self.params))


def t(template: str, **params: Any) -> Text:
    """The message `template` (str.format syntax, named fields) with `params`."""
    return Text(template, params)


def text_of(value: object) -> Text:
    """`value` as a Text: itself, or a plain string as a template without parameters."""
    return value if isinstance(value, Text) else Text(str(value))
