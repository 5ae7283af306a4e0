"""The CDA builder's exact output, pinned byte for byte on fixed prescriptions and dispensations.

The schema, schematron and round-trip tests say the documents are valid and say what the model
says; these say they are the very bytes the gateway wrote before (a faster builder must not
change a signed document by accident). The random ids (line ids, section ids, flag ids) come
from a counter here. The golden files were written by the element-by-element lxml builder; after
a deliberate change of the output, rewrite them with `MSSGW_GOLDEN=write pytest
tests/test_documents_pinned.py` and review the diff.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import os
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.documents import cda, samples
from gateway.documents.build import build_dispensation, build_prescription
from gateway.documents.model import (
    DispensedLine,
    DispensingKind,
    Dose,
    Frequency,
    PatientInfo,
    Phase,
    PrescriptionLine,
    Product,
    StructureInfo,
    SubstitutionRefusal,
)
from gateway.identifiers import OID_INS_TEST

GOLDEN = Path(__file__).parent / "golden"
PDF = b"%PDF-1.7 pinned\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\npinned"

# Markup characters and whitespace that XML escapes differently in text and in attributes
# (the product label is both the narrative's text and the code's displayName).
AWKWARD = Product(label='Crème "A&B" <10 %>\tà l\'eau', cis="60234100", cip13="3400935955838",
                  atc="N02BE01")

PRESCRIPTIONS = {
    "sample": samples.prescription(),
    "every-option": samples.prescription(
        patient=PatientInfo(ins="279035121518989", ins_oid=OID_INS_TEST, birth_name="O'NEIL",
                            given_names="Zoé  Ann", sex="M", birth_date=dt.date(2001, 1, 31),
                            used_name="Smith & Co", address="2 rue <Haute>\n\n51100 Reims\r"),
        author=dataclasses.replace(samples.DOCTOR, title=None, phone=None, specialty=None,
                                   structure=StructureInfo("1750001232", "Maison <Santé>")),
        lines=(
            PrescriptionLine(product=AWKWARD, phases=(Phase(
                             Dose(Decimal("2.50"), "[drp]"), Frequency(4, Decimal(1), "wk"),
                             duration_days=1),),
                             quantity=Decimal("1.5"), quantity_unit="flacon", renewals=12,
                             route="20061000", dosage_text="Le soir\navant \"coucher\""),
            PrescriptionLine(product=Product(label="AMOXICILLINE", cip13="3400935955838"),
                             phases=(Phase(frequency=Frequency(1, Decimal(3), "d")),),
                             substitutable=False,
                             substitution_refusal=SubstitutionRefusal.CIF, ald=True),
            PrescriptionLine(product=Product(label="Pommade en mots"), phases=(Phase(Dose(
                             Decimal(1), "{application}")),), quantity=Decimal(3),
                             quantity_unit="pot",
                             route="99999999"),
        ),
        bizone=True, secured=True, exception_drugs=True, notes="À revoir <dans> 8 jours & plus",
        title="Ordonnance", version=3, validity_end=dt.date(2027, 1, 1)),
    "no-given-name": samples.prescription(
        patient=dataclasses.replace(samples.PATIENT, given_names="", birth_place=None),
        author=dataclasses.replace(samples.DOCTOR, email=None, specialty=None),
        bizone=False),
}

DISPENSATIONS = {
    "sample": samples.dispensation(),
    "awkward": dataclasses.replace(
        samples.dispensation(), notes="Reste <1> boîte & demie",
        author=dataclasses.replace(samples.PHARMACIST, title="Docteur", phone="01 02 03 04 05"),
        lines=(DispensedLine("1", AWKWARD, Decimal("0.5"), DispensingKind.SUBSTITUTED),
               DispensedLine("2", samples.MAGISTRAL, Decimal(1), DispensingKind.ADAPTED,
                             reason="\"demi\" dose <accord>", phases=(Phase(
                                 Dose(Decimal("0.5"), "{application}"), Frequency(1),
                                 duration_days=5),)))),
}


@pytest.fixture
def counted_ids(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    counter = itertools.count(1)
    monkeypatch.setattr(cda, "new_uuid", lambda: f"00000000-0000-4000-8000-{next(counter):012d}")
    monkeypatch.setattr(cda, "new_oid", lambda: f"2.25.{next(counter)}")
    yield


def _check(name: str, data: bytes) -> None:
    path = GOLDEN / name
    if os.environ.get("MSSGW_GOLDEN") == "write":
        path.write_bytes(data)
        pytest.skip(f"wrote {path}")
    assert data == path.read_bytes(), f"the builder's output changed: compare with {path}"


def _identified(p: object) -> object:
    return dataclasses.replace(p, identifier=samples.SAMPLE_IDENTIFIER,  # type: ignore
                               document_id="2.25.1000", set_id="2.25.2000")


@pytest.mark.parametrize("name", list(PRESCRIPTIONS))
def test_prescription_bytes_are_pinned(name: str, counted_ids: None) -> None:
    p = _identified(PRESCRIPTIONS[name])
    _check(f"prescription-{name}.xml", build_prescription(p, PDF, PNG))  # type: ignore[arg-type]


@pytest.mark.parametrize("name", list(DISPENSATIONS))
def test_dispensation_bytes_are_pinned(name: str, counted_ids: None) -> None:
    d = dataclasses.replace(DISPENSATIONS[name], document_id="2.25.3000", set_id="2.25.4000")
    _check(f"dispensation-{name}.xml", build_dispensation(d))


def test_golden_files_are_all_used() -> None:
    expected = {f"prescription-{n}.xml" for n in PRESCRIPTIONS} | \
        {f"dispensation-{n}.xml" for n in DISPENSATIONS}
    assert {p.name for p in GOLDEN.glob("*.xml")} == expected

