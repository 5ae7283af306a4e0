"""Builders shared by the registry and DMP tests (plain functions, no pytest magic)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

from gateway.documents.model import (
    AuthorInfo,
    DispensedLine,
    PatientInfo,
    Prescription,
    PrescriptionLine,
    Product,
)
from gateway.prescriptions.identifier import new_identifier
from gateway.prescriptions.registry import DispensationReport, Dispenser

INS = "279035121518989"
RPPS = "10000000009"
DOCTOR = "dr.martin@test.localhost"
PATIENT = f"{INS}@patient.test.localhost"
PHARMACY_ADDRESS = "pharmacie.centrale@test.localhost"
PHARMACY = Dispenser(PHARMACY_ADDRESS, is_pharmacy=True)
NOT_PHARMACY = Dispenser("dr.other@test.localhost", is_pharmacy=False)
DAY0 = dt.datetime(2026, 1, 15, 9, 30, tzinfo=dt.UTC)


def plain_home(tmp_path: Path) -> Path:
    """A gateway home with only its config.toml: the registry, DMP and directory commands need
    no `mssgw init` (whose CA keys take seconds), the database is created on first use."""
    home = tmp_path / "gw"
    home.mkdir()
    (home / "config.toml").write_text(
        '[gateway]\ndomain = "test.localhost"\nhostname = "mx.test.localhost"\nworkers = 1\n'
    )
    return home


def prescription(
    *,
    date: dt.datetime = DAY0,
    validity_end: dt.date | None = None,
    lines: tuple[tuple[str, str | None, int], ...] = (("DOLIPRANE 1000 mg", "2", 0),),
) -> Prescription:
    return Prescription(
        patient=PatientInfo(
            ins=INS,
            ins_oid="1.2.250.1.213.1.4.10",
            birth_name="DUPONT",
            given_names="Marie",
            sex="F",
            birth_date=dt.date(1979, 3, 5),
        ),
        author=AuthorInfo(
            national_id="8" + RPPS, family_name="MARTIN", given_name="Paul", profession="10"
        ),
        date=date,
        validity_end=validity_end,
        identifier=new_identifier(),
        document_id=f"1.2.250.1.999.1.{new_identifier()}",
        lines=tuple(
            PrescriptionLine(
                product=Product(label=label),
                quantity=None if qty is None else Decimal(qty),
                renewals=renewals,
                line_id=f"L{i}",
            )
            for i, (label, qty, renewals) in enumerate(lines, start=1)
        ),
    )


def report(
    identifier: str,
    *quantities: tuple[str, str],
    dispensation_id: str = "disp-1",
    dispenser: Dispenser = PHARMACY,
    date: dt.datetime = DAY0,
    **line_kwargs: object,
) -> DispensationReport:
    return DispensationReport(
        dispensation_id=dispensation_id,
        prescription_id=identifier,
        dispenser=dispenser,
        date=date,
        lines=tuple(
            DispensedLine(
                line_ref=ref, product=Product(label="x"), quantity=Decimal(q), **line_kwargs
            )
            for ref, q in quantities
        ),
    )
