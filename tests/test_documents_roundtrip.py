"""Property: build -> parse returns the same prescription / dispensation (hypothesis).

Bounded examples and no schematron here (it is checked on fixed cases in test_documents.py);
the schema is checked on every generated document because it is cheap.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import string
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway.documents import cda, samples
from gateway.documents.build import (
    assign_ids,
    build_dispensation,
    build_prescription,
    prescription_document,
)
from gateway.documents.model import (
    AuthorInfo,
    Dispensation,
    DispensedLine,
    DispensingKind,
    Dose,
    Frequency,
    Moment,
    PatientInfo,
    Phase,
    Prescription,
    PrescriptionLine,
    Product,
    StructureInfo,
    SubstitutionRefusal,
    on_day,
)
from gateway.documents.parse import parse_document
from gateway.documents.validate import load_schema
from gateway.identifiers import OID_INS_TEST, ean13_check_digit, ins_key
from gateway.xdm.header import cda_entry

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

# Printable text a person types; no leading/trailing/double spaces (XML text is compared
# after whitespace normalisation by the narrative reader).
words = st.text(alphabet=string.ascii_letters + "éèàçÉ'-0123456789", min_size=1, max_size=12)
text = st.lists(words, min_size=1, max_size=5).map(" ".join)
decimals = st.decimals(min_value=Decimal("0.25"), max_value=Decimal(500), places=2).map(
    lambda d: d.normalize())
positive_int = st.integers(min_value=1, max_value=400)


@st.composite
def ins_numbers(draw: st.DrawFn) -> str:
    body = f"{draw(st.sampled_from('12'))}{draw(st.integers(0, 99)):02d}" \
        f"{draw(st.integers(1, 12)):02d}{draw(st.integers(1, 95)):02d}" \
        f"{draw(st.integers(1, 999)):03d}{draw(st.integers(1, 999)):03d}"
    return body + f"{ins_key(body):02d}"


@st.composite
def products(draw: st.DrawFn) -> Product:
    kind = draw(st.sampled_from(["cis", "cip", "both", "magistral", "words"]))
    label = draw(text)
    cis = f"6{draw(st.integers(0, 9999999)):07d}"
    body = f"34009{draw(st.integers(0, 9999999)):07d}"
    cip = body + str(ean13_check_digit(body))
    atc = draw(st.none() | st.sampled_from(["N02BE01", "H03AA01"]))
    if kind == "magistral":
        return Product(label=label, magistral=True)
    if kind == "words":
        return Product(label=label)
    return Product(label=label, cis=cis if kind != "cip" else None,
                   cip13=cip if kind != "cis" else None, atc=atc if kind != "cip" else atc)


frequencies = st.one_of(
    st.builds(Frequency, st.sampled_from([1, 2, 3, 4, 6])),
    st.builds(Frequency, st.just(1), st.sampled_from([Decimal(2), Decimal(3)]), st.just("d")),
    st.builds(Frequency, st.just(1), st.just(Decimal(1)), st.just("wk")),
)


# Times of day: the words' clock times, another clock time, events.
day_moments = st.sampled_from([cda.MORNING, cda.NOON, cda.EVENING, cda.BEDTIME, cda.MEAL,
                               Moment(time=dt.time(7, 30)), Moment(event="ACM")])
# A lone time of day with a frequency other than daily keeps that frequency (the period of
# the time's PIVL_TS, or a PIVL_TS beside the event's EIVL_TS).
sparse = st.sampled_from([Frequency(1, Decimal(2), "d"), Frequency(1, Decimal(3), "d"),
                          Frequency(1, Decimal(1), "wk")])
doses = st.builds(Dose, decimals, st.sampled_from(["{tablet}", "mg", "mL", "[drp]"]),
                  st.none() | st.just(Decimal(600)))


@st.composite
def phase_lists(draw: st.DrawFn, max_phases: int = 3, max_moments: int = 3
                ) -> tuple[Phase, ...]:
    """A posology in the model's canonical form (what a document reads back as): phases one
    after the other, all but the last with a duration; with times of day, a frequency only
    when it is not "once per time of day"."""
    n = draw(st.integers(1, max_phases))
    out = []
    for k in range(n):
        moments = tuple(dict.fromkeys(draw(st.lists(day_moments, max_size=max_moments))))
        if not moments:
            frequency = draw(st.none() | frequencies)
        elif len(moments) == 1:
            frequency = draw(st.none() | sparse)
        else:
            frequency = None
        phase = Phase(dose=draw(st.none() | doses), frequency=frequency, moments=moments,
                      duration_days=draw(positive_int) if k < n - 1
                      else draw(st.none() | positive_int))
        if len(moments) > 1 and draw(st.booleans()):  # split dosing: a dose per time of day
            split = tuple(draw(st.lists(doses, min_size=len(moments), max_size=len(moments))))
            if len(set(split)) > 1:  # canonical: equal doses are one dose
                phase = dataclasses.replace(phase, dose=None, doses=split)
        if not phase.structured:
            phase = dataclasses.replace(phase, duration_days=draw(positive_int))
        out.append(phase)
    return tuple(out)


@st.composite
def lines(draw: st.DrawFn) -> PrescriptionLine:
    structured = draw(st.booleans())
    substitutable = draw(st.booleans())
    quantity = draw(st.none() | decimals)
    return PrescriptionLine(
        product=draw(products()),
        phases=draw(phase_lists()) if structured else
        draw(st.just(()) | st.builds(lambda d: (Phase(duration_days=d),), positive_int)),
        dosage_text=draw(st.none() | text) if structured else draw(text),
        quantity=quantity,
        # the unit says nothing without a quantity: the model's default then
        quantity_unit=draw(st.sampled_from(["boîte", "flacon", "tube"])) if quantity else "boîte",
        renewals=draw(st.integers(0, 12)),
        substitutable=substitutable,
        substitution_refusal=None if substitutable else draw(st.sampled_from(
            list(SubstitutionRefusal))),
        ald=draw(st.booleans()),
        route=draw(st.none() | st.sampled_from(["20053000", "20003000"])),
    )


offsets = st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=1)),
                           dt.timezone(dt.timedelta(hours=2))])
moments = st.builds(lambda d, tz: d.replace(microsecond=0, tzinfo=tz),
                    st.datetimes(min_value=dt.datetime(2024, 1, 1),
                                 max_value=dt.datetime(2030, 12, 31)), offsets)
# The document's date: a moment, or a day alone (a form dated another day than its sending).
dated = st.tuples(moments, st.just(False)) | st.tuples(
    st.dates(dt.date(2024, 1, 1), dt.date(2030, 12, 31)).map(on_day), st.just(True))


@st.composite
def people(draw: st.DrawFn) -> tuple[PatientInfo, AuthorInfo]:
    patient = PatientInfo(
        ins=draw(ins_numbers()), ins_oid=OID_INS_TEST, birth_name=draw(words).upper(),
        given_names=draw(text), sex=draw(st.sampled_from("FM")),
        birth_date=draw(st.dates(dt.date(1920, 1, 1), dt.date(2023, 12, 31))),
        birth_place=draw(st.none() | st.sampled_from(["51215", "75056", "2A004"])),
        used_name=draw(st.none() | words), address=draw(st.none() | text))
    structure = draw(st.builds(  # CI-SIS documents name the structure: always one
        StructureInfo, st.just("1750001232"), text, st.none() | text,
        st.none() | st.just("0102030405")))
    author = dataclasses.replace(samples.DOCTOR, family_name=draw(words), given_name=draw(words),
                                 title=draw(st.none() | st.just("Dr")),
                                 phone=draw(st.none() | st.just("0601020304")),
                                 email=draw(st.none() | st.just("a.b@mssgw.localhost")),
                                 specialty=draw(st.none() | st.just("SM26")),
                                 structure=structure)
    return patient, author


@st.composite
def prescriptions(draw: st.DrawFn) -> Prescription:
    patient, author = draw(people())
    date, day_only = draw(dated)
    return Prescription(
        patient=patient, author=author, date=date, day_only=day_only,
        lines=tuple(draw(st.lists(lines(), min_size=1, max_size=4))),
        bizone=draw(st.booleans()), exception_drugs=draw(st.booleans()),
        secured=draw(st.booleans()), notes=draw(st.none() | text),
        title=draw(st.sampled_from(["Prescription de produits de santé", "Ordonnance"])),
        version=draw(st.integers(1, 3)),
    )


@pytest.fixture(scope="module")
def schema(shared_dir: Path) -> etree.XMLSchema:
    return load_schema(str(shared_dir / "ci-sis/infrastructure/cda/CDA_extended.xsd"))


@SETTINGS
@given(p=prescriptions())
def test_prescription_round_trip(p: Prescription, schema: etree.XMLSchema) -> None:
    expected = assign_ids(p)
    data = build_prescription(expected, samples.sample_pdf(), samples.sample_png())
    assert schema.validate(etree.fromstring(data)), schema.error_log
    parsed = parse_document(data)
    assert parsed.problems == []
    got = parsed.prescription
    assert got is not None
    assert got.patient == expected.patient
    assert got.author == expected.author
    for mine, theirs in zip(got.lines, expected.lines, strict=True):
        assert mine == theirs
    assert got == expected


@settings(max_examples=25, deadline=None)
@given(p=prescriptions())
def test_xds_metadata_from_the_built_tree_are_those_of_its_bytes(p: Prescription) -> None:
    """The prescribe flow reads the XDS metadata from the tree it serialised, not the bytes:
    whatever the names, addresses and lines hold, both give the same DocumentEntry."""
    data, tree = prescription_document(assign_ids(p), samples.sample_pdf(), samples.sample_png())
    from_bytes = cda_entry(data, entry_id="urn:uuid:1", uri="DOC0001.XML")
    assert cda_entry(data, entry_id="urn:uuid:1", uri="DOC0001.XML", root=tree) == from_bytes
    assert from_bytes.title and from_bytes.authors and from_bytes.patient_id


@st.composite
def dispensations(draw: st.DrawFn) -> Dispensation:
    patient, author = draw(people())
    author = dataclasses.replace(author, profession="21", specialty=None)
    date, day_only = draw(dated)
    n = draw(st.integers(1, 4))
    dispensed = []
    for i in range(1, n + 1):
        kind = draw(st.sampled_from(list(DispensingKind)))
        delivered = kind is not DispensingKind.NOT_DELIVERED
        dispensed.append(DispensedLine(
            line_ref=draw(st.sampled_from([str(i), f"LINE-{i}",
                                           "7421FE7D-0B1C-4A2E-9F3D-1234567890AB"])),
            product=draw(products()),
            quantity=draw(decimals) if delivered else Decimal(0),
            kind=kind,
            quantity_unit=draw(st.sampled_from(["boîte", "flacon", "tube"])),
            reason=draw(text) if kind is DispensingKind.NOT_DELIVERED else
            draw(st.none() | text),
            phases=draw(phase_lists(max_phases=1, max_moments=1).filter(
                lambda phases: bool(phases[0].frequency or phases[0].moments)))
            if kind in (DispensingKind.ADAPTED, DispensingKind.SUBSTITUTED, DispensingKind.PARTIAL)
            and draw(st.booleans()) else (),
            refill=kind is DispensingKind.PARTIAL and draw(st.booleans()),
        ))
    return Dispensation(
        prescription_id="01S2TBPZ2JCNZZYGH0", prescription_document_id="2.25.42",
        patient=patient, author=author, date=date, day_only=day_only, lines=tuple(dispensed),
        document_id="2.25.7", set_id="2.25.8", version=draw(st.integers(1, 3)),
        notes=draw(st.none() | text))


@SETTINGS
@given(d=dispensations())
def test_dispensation_round_trip(d: Dispensation, schema: etree.XMLSchema) -> None:
    data = build_dispensation(d)
    assert schema.validate(etree.fromstring(data)), schema.error_log
    parsed = parse_document(data)
    assert parsed.problems == []
    assert parsed.dispensation == d
