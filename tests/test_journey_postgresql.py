"""The prescription journey on the PostgreSQL backend: the same tests as tests/test_journey.py
(imported here, so they run against this module's `gw`), through the real SMTP and IMAP
listeners, with every piece of state in PostgreSQL: each one that writes or reads a store
differently (registry, DMP filing and reading, the flows' keys, a cancellation and a
dispensation through the CLI, a message's bytes through the mail store). The variants that
differ only in the document they carry (forms, refusals, CDA checks) exercise the flows, not
the storage: they stay on the embedded backend, as CI time is counted."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.journey_helpers import make_home, running
from tests.test_journey import (  # noqa: F401 - collected here, with this module's gw
    test_cancel_by_mail,
    test_cancelled_is_invalid,
    test_cli_dispense_writes_signs_and_files_the_edisp,
    test_dispense_part_then_rest_then_refused,
    test_doctor_to_patient,
    test_edisp_cda_attachment_is_recorded,
    test_forward_to_pharmacy_is_valid,
    test_lab_report_package_is_delivered_and_filed,
    test_ordinary_mail_is_delivered_unchanged,
    test_over_dispensing_is_refused,
    test_patient_objection_means_no_report,
    test_same_dispensation_twice_is_recorded_once_and_said_so,
    test_same_message_twice_registers_once,
)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, _gateway_template: Path, shared_dir: Path,
         postgres_server) -> Path:  # noqa: ANN001
    name = postgres_server.create_database()
    return make_home(_gateway_template, tmp_path_factory.mktemp("journey-pg") / "gw",
                     shared_dir, dsn=postgres_server.dsn(name))


@pytest.fixture(scope="module")
def gw(home: Path):  # noqa: ANN201
    with running(home) as gateway:
        yield gateway
