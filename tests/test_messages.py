"""Refusals in two languages from one set of rules: every message a module the console reaches
can refuse with has its French (gateway/french.py), with the same parameters, and none is
built in a way another language cannot follow (an f-string). The console's pages themselves
are checked in tests/test_admin_api.py (no English reaches them) and test_admin_console.py."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from message_scan import error_classes, scan

from gateway.errors import InvalidIdentifier
from gateway.french import CATALOGUE, french, say
from gateway.texts import Text, t

ROOT = Path(__file__).resolve().parent.parent
# The modules whose refusals the console can show: its services and what they call.
CONSOLE_REACHES = [
    "errors.py", "identifiers.py", "audit.py", "directory/validate.py", "directory/identity.py",
    "directory/sqlite.py", "directory/repository.py", "directory/admin.py",
    "directory/passwords.py", "directory/whitelist.py", "admins/accounts.py", "admins/model.py",
    "admins/paging.py", "admins/store.py", "pki/admin.py", "pki/identity.py", "pki/ca.py",
    "pki/crl.py", "prescriptions/admin.py", "prescriptions/registry.py",
    "prescriptions/sqlite_registry.py", "prescriptions/identifier.py", "dmp/admin.py",
    "dmp/model.py", "dmp/sqlite.py", "store/admin.py", "store/queue.py", "web/api.py",
    "web/auth.py", "web/console.py", "web/errors.py",
]


@pytest.fixture(scope="module")
def found():
    return scan([ROOT / "gateway" / m for m in CONSOLE_REACHES], error_classes())


def test_every_refusal_the_console_can_show_has_its_french(found):
    missing = {template: where for template, where in found.templates.items()
               if template not in CATALOGUE}
    assert not missing, f"add their French to gateway/french.py: {missing}"


def test_no_refusal_is_built_in_a_way_french_cannot_follow(found):
    assert not found.built, (
        f"messages built with f-strings or +: use t('template', name=value): {found.built}")


def test_the_french_says_the_same_parameters():
    def fields(template: str) -> set[str]:
        return {f for _, f, _, _ in string.Formatter().parse(template) if f}

    for english, french_template in CATALOGUE.items():
        assert fields(english) == fields(french_template), english


def test_a_refusal_is_english_for_the_cli_and_french_for_the_console():
    exc = InvalidIdentifier("rpps", "10003829916", "the RPPS check digit (Luhn) does not match")
    assert str(exc) == ("rpps: '10003829916' is invalid: the RPPS check digit (Luhn) does not"
                        " match")
    assert say(exc) == ("RPPS : « 10003829916 » n'est pas valide : la clé de contrôle du RPPS"
                        " (Luhn) ne correspond pas")
    nested = t("{field}: {rule}", field="birth-date", rule=t("at most {n} characters", n=3))
    assert isinstance(nested, Text) and nested == "birth-date: at most 3 characters"
    assert french(nested) == "date de naissance : 3 caractères au plus"
    # A message from somewhere not translated yet: said to be a refusal, in French first.
    assert say(ValueError("boom")) == "Opération refusée : boom"


def test_a_text_survives_pickling():
    import pickle

    text = t("line {pos}: renewals cannot be negative", pos=2)
    again = pickle.loads(pickle.dumps(text))
    assert again == text and again.template == text.template and again.params == {"pos": 2}
