"""Sample prescriptions for the ordonnance tests and bench (built in code: no shared data)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from gateway.documents.model import (
    AuthorInfo,
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


def valid_identifier() -> str:
    """A fixed identifier shaped like the national example 01S2TBPZ2JCNZZYGHZ, with our check
    character (fixed, so rendered pages can be compared across runs)."""
    from gateway.prescriptions.identifier import check_character

    return "01S2TBPZ2JCNZZYG0" + check_character("01S2TBPZ2JCNZZYG0")


PATIENT = PatientInfo(
    ins="279035121518989",
    ins_oid="1.2.250.1.213.1.4.10",
    birth_name="Lefèvre",
    given_names="Françoise Cécile",
    sex="F",
    birth_date=dt.date(1979, 3, 12),
    birth_place="51215",
)

AUTHOR = AuthorInfo(
    national_id="810101234567",
    family_name="Martin",
    given_name="Hélène",
    profession="10",
    specialty="SM26",
    phone="01 23 45 67 89",
    email="helene.martin@medecin.mssante.test",
    structure=StructureInfo(
        national_id="1750000000",
        name="Cabinet médical de l'Église",
        address="12 rue de la Paix\n75002 Paris",
        phone="01 23 45 67 80",
    ),
)


LINES = (
    PrescriptionLine(
        product=Product(label="AMOXICILLINE BIOGARAN 1 g, comprimé dispersible", cis="60234100",
                        cip13="3400936403114"),
        phases=(Phase(Dose(Decimal(1), "{comprime}"), Frequency(3), duration_days=7),),
        route="20053000",
        quantity=Decimal(2),
        dosage_text="À prendre au cours des repas.",
    ),
    PrescriptionLine(
        product=Product(label="LÉVOTHYROX 75 microgrammes, comprimé sécable", cis="67570116"),
        phases=(Phase(Dose(Decimal(1), "{comprime}"), Frequency(1), duration_days=90),),
        dosage_text="Le matin à jeun, 30 minutes avant le petit-déjeuner.",
        quantity=Decimal(3),
        renewals=2,
        substitutable=False,
        substitution_refusal=SubstitutionRefusal.MTE,
    ),
    PrescriptionLine(
        product=Product(label="PARACÉTAMOL 500 mg, gélule"),
        phases=(Phase(Dose(Decimal("0.5"), "{gelule}")),),
        dosage_text="En cas de douleur ou de fièvre, jusqu'à 6 gélules par jour ; œdème : éviter.",
        quantity=Decimal(1),
    ),
)


def prescription(**kw: object) -> Prescription:
    base: dict[str, object] = dict(
        patient=PATIENT,
        author=AUTHOR,
        date=dt.datetime(2026, 11, 22, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=1))),
        lines=LINES,
        identifier=valid_identifier(),
    )
    base.update(kw)
    return Prescription(**base)  # type: ignore[arg-type]


def bizone_prescription() -> Prescription:
    ald = (
        PrescriptionLine(product=Product(label="METFORMINE 1000 mg, comprimé pelliculé"),
                         phases=(Phase(Dose(Decimal(1), "{comprime}"), Frequency(2),
                                       duration_days=90),),
                         quantity=Decimal(3), renewals=3, ald=True),
        PrescriptionLine(product=Product(label="INSULINE GLARGINE 100 U/mL, stylo prérempli"),
                         dosage_text="20 unités le soir", phases=(Phase(duration_days=30),),
                         quantity=Decimal(1),
                         substitutable=False, substitution_refusal=SubstitutionRefusal.CIF,
                         ald=True),
    )
    other = (LINES[2],)
    return prescription(lines=ald + other, bizone=True)
