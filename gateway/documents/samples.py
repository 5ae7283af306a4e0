"""Sample prescriptions and dispensations (test INS, valid RPPS/FINESS) for tests, benchmarks
and documentation. The PDF and PNG are minimal but real files, so a document built from them is
a valid document; the gateway itself embeds the real ordonnance (gateway.ordonnance)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
from decimal import Decimal
from functools import lru_cache

from gateway.documents.model import (
    AuthorInfo,
    Dispensation,
    DispensedLine,
    DispensingKind,
    Dose,
    Frequency,
    PatientInfo,
    Phase,
    Prescription,
    PrescriptionLine,
    Product,
    StructureInfo,
    SubstitutionRefusal,
)
from gateway.identifiers import OID_INS_TEST

PARIS = dt.timezone(dt.timedelta(hours=1))

PATIENT = PatientInfo(
    ins="279035121518989", ins_oid=OID_INS_TEST, birth_name="PAT-TROIS",
    given_names="DOMINIQUE MARIE", sex="F", birth_date=dt.date(1979, 3, 28), birth_place="51215",
)
DOCTOR = AuthorInfo(
    national_id="810001234565", family_name="MARTIN", given_name="Claire", profession="10",
    specialty="SM26", title="Dr", phone="0102030405", email="claire.martin@mssgw.localhost",
    structure=StructureInfo(national_id="1750001232", name="Cabinet du Dr Martin",
                            address="1 rue de la Paix\n75002 Paris", phone="0102030405"),
)
PHARMACIST = AuthorInfo(
    national_id="810002345675", family_name="DURAND", given_name="Paul", profession="21",
    structure=StructureInfo(national_id="1750001232", name="Pharmacie du Centre"),
)

DOLIPRANE = Product(label="DOLIPRANE 1000 mg, comprimé", cis="60234100", cip13="3400935955838")
LEVOTHYROX = Product(label="LEVOTHYROX 50 microgrammes, comprimé sécable", cis="65143010")
MAGISTRAL = Product(label="Diprosone 30 g, cérat de Galien 70 g", magistral=True)


def prescription(**changes: object) -> Prescription:
    """Three lines: structured dosage, non-substitutable MTE for the ALD, magistral in words."""
    base = Prescription(
        patient=PATIENT,
        author=DOCTOR,
        date=dt.datetime(2026, 11, 20, 9, 30, tzinfo=PARIS),
        lines=(
            PrescriptionLine(product=DOLIPRANE, phases=(Phase(
                             Dose(Decimal(1), "{tablet}"), Frequency(3), duration_days=5),),
                             quantity=Decimal(2), route="20053000"),
            PrescriptionLine(product=LEVOTHYROX, phases=(Phase(
                             Dose(Decimal(1), "{tablet}"), Frequency(1), duration_days=90),),
                             quantity=Decimal(3),
                             renewals=3, substitutable=False,
                             substitution_refusal=SubstitutionRefusal.MTE, ald=True),
            PrescriptionLine(product=MAGISTRAL, phases=(Phase(duration_days=10),),
                             dosage_text="2 applications par jour sur les plaques pendant 10 jours",
                             quantity=Decimal(1), quantity_unit="tube", route="20003000"),
        ),
        bizone=True,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def dispensation(prescription_id: str = "A1B2C3D4E5F6G7H8J9",
                 prescription_document_id: str = "2.25.1234567890") -> Dispensation:
    return Dispensation(
        prescription_id=prescription_id,
        prescription_document_id=prescription_document_id,
        patient=PATIENT,
        author=PHARMACIST,
        date=dt.datetime(2026, 11, 21, 17, 5, tzinfo=PARIS),
        lines=(
            DispensedLine("1", Product(label="PARACETAMOL EG 1 g, comprimé", cis="62772966"),
                          Decimal(2), DispensingKind.SUBSTITUTED, reason="générique"),
            DispensedLine("2", LEVOTHYROX, Decimal(1), DispensingKind.PARTIAL,
                          reason="une boîte sur trois, le reste au renouvellement"),
            DispensedLine("3", MAGISTRAL, Decimal(0), DispensingKind.NOT_DELIVERED,
                          reason="préparation à commander, disponible demain",
                          quantity_unit="tube"),
        ),
    )


SAMPLE_IDENTIFIER = "01S2TBPZ2JCNZZYGH0"  # the national example, with our check character


@lru_cache(maxsize=1)
def sample_pdf() -> bytes:
    """The sample prescription's ordonnance, under the identifier of `sample_png`."""
    from dataclasses import replace

    from gateway.ordonnance import render_pdf  # the renderer reads this package's model

    return render_pdf(replace(prescription(), identifier=SAMPLE_IDENTIFIER))


@lru_cache(maxsize=1)
def sample_png() -> bytes:
    import segno

    out = io.BytesIO()
    segno.make(SAMPLE_IDENTIFIER, error="m").save(out, kind="png", scale=4)
    return out.getvalue()
