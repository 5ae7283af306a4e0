"""CDA build, parse and the three validation layers, against the official CI-SIS kit."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree

from gateway.cli import main
from gateway.documents import samples
from gateway.documents.build import (
    BuildError,
    assign_ids,
    build_dispensation,
    build_prescription,
)
from gateway.documents.cda import XP
from gateway.documents.model import Dose, Frequency, Phase, PrescriptionLine, Product
from gateway.documents.parse import DocumentError, parse_document
from gateway.documents.validate import FAST_LAYERS, ValidationReport, validate_document
from gateway.identifiers import OID_PRESCRIPTION_ID
from gateway.prescriptions.identifier import is_valid
from gateway.xmlsafe import UnsafeXML


@dataclasses.dataclass
class Kit:
    schema: Path
    schematrons: Path
    examples: Path
    cache: Path | None = None

    def validate(self, data: bytes, **kw: object) -> ValidationReport:
        """The fast layers (schema, volet, own rules): every layer, generic ones included, is
        run on the corpus (test_documents_corpus) and the official examples
        (test_documents_official), once per document."""
        kw.setdefault("layers", FAST_LAYERS)
        return validate_document(data, schema=self.schema, schematron_dir=self.schematrons,
                                 cache=self.cache, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def kit(shared_dir: Path) -> Kit:
    from conftest import SCHEMATRON_CACHE

    return Kit(shared_dir / "ci-sis/infrastructure/cda/CDA_extended.xsd",
               shared_dir / "ci-sis/schematrons", shared_dir / "ci-sis/ExemplesCDA",
               SCHEMATRON_CACHE)


def _build(p: object = None) -> bytes:
    return build_prescription(p or samples.prescription(), samples.sample_pdf(),  # type: ignore
                              samples.sample_png())


def _failures(report: ValidationReport) -> list[str]:
    return [f"{p.layer}: {p}" for p in report.problems]


VARIANTS = {
    "several lines, ALD bizone, MTE, magistral": samples.prescription(),
    "single line, free-text dosage only": samples.prescription(lines=(
        PrescriptionLine(product=samples.DOLIPRANE, dosage_text="1 comprimé si douleur, 4 par"
                         " jour au plus", quantity=Decimal(1)),), bizone=False),
    "renewals, EFG and CIF, every other day": samples.prescription(lines=(
        PrescriptionLine(product=samples.LEVOTHYROX, phases=(Phase(
                         Dose(Decimal("0.5"), "{tablet}"), Frequency(1, Decimal(2), "d"),
                         duration_days=28),),
                         quantity=Decimal(1), renewals=5, substitutable=False,
                         substitution_refusal="EFG", ald=True),  # type: ignore[arg-type]
        PrescriptionLine(product=Product(label="AMOXICILLINE", cip13="3400935955838"),
                         phases=(Phase(Dose(Decimal(500), "mg"), Frequency(3), duration_days=7),),
                         quantity=Decimal(2), substitutable=False,
                         substitution_refusal="CIF"),  # type: ignore[arg-type]
    ), secured=True, exception_drugs=True),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_generated_prescriptions_pass_the_fast_layers(kit: Kit, name: str) -> None:
    report = kit.validate(_build(VARIANTS[name]))
    assert report.kind == "prescription" and report.version == "2024.01"
    assert [(layer.name, layer.status) for layer in report.layers] == [
        ("schema", "passed"), ("volet", "passed"), ("rules", "passed")], _failures(report)
    assert report.problems == [], _failures(report)


def test_generated_dispensation_passes_every_layer(kit: Kit) -> None:
    report = kit.validate(build_dispensation(samples.dispensation()))
    assert report.kind == "dispensation"
    assert report.ok, _failures(report)


def test_fresh_ids_and_identifier(kit: Kit) -> None:
    a, b = _build(), _build()
    ta, tb = etree.fromstring(a), etree.fromstring(b)
    for path in ("c:id/@root", "c:setId/@root"):
        assert ta.xpath(path, namespaces=XP) != tb.xpath(path, namespaces=XP)
    ident = ta.xpath(f"c:documentationOf/c:serviceEvent/c:id[@root='{OID_PRESCRIPTION_ID}']"
                     "/@extension", namespaces=XP)[0]
    assert is_valid(ident)
    assert ta.xpath("c:versionNumber/@value", namespaces=XP) == ["1"]
    # An identifier given by the caller (printed on the PDF) is the one in the document.
    p = assign_ids(samples.prescription())
    assert parse_document(_build(p)).prescription.identifier == p.identifier  # type: ignore


def test_narrative_comes_from_the_same_data() -> None:
    root = etree.fromstring(_build())
    text = " ".join(" ".join(root.xpath("//c:section/c:text//text()", namespaces=XP)).split())
    assert "1 comprimé 3 fois par jour pendant 5 jours" in text
    assert "Non substituable (MTE: Marge thérapeutique étroite)" in text
    assert "Préparation magistrale : Diprosone 30 g" in text
    assert "affection de longue durée" in text  # bizone layout


def test_build_then_parse_returns_the_prescription() -> None:
    p = assign_ids(samples.prescription())
    parsed = parse_document(_build(p))
    assert parsed.problems == []
    assert parsed.prescription == p


def test_build_then_parse_returns_the_dispensation() -> None:
    d = samples.dispensation()
    parsed = parse_document(build_dispensation(d))
    assert parsed.problems == []
    got = parsed.dispensation
    assert got is not None
    assert dataclasses.replace(got, document_id=None, set_id=None) == d


def test_split_dosing_a_dose_per_time_of_day() -> None:
    """'1 comprimé le matin, 2 le soir': one subordinate administration per time of day, each
    with its own dose, read back as such; the narrative and the PDF's words say each dose.
    A document that gives doses for some of its times only is reported, the first dose kept."""
    from gateway.documents import cda
    from gateway.ordonnance.wording import dosage_lines

    one, two = Dose(Decimal(1), "{tablet}"), Dose(Decimal(2), "{tablet}")
    phase = Phase(moments=(cda.MORNING, cda.EVENING), duration_days=10, doses=(one, two))
    line = PrescriptionLine(product=samples.DOLIPRANE, phases=(phase,), quantity=Decimal(1))
    data = _build(samples.prescription(lines=(line,)))
    root = etree.fromstring(data)
    subs = root.xpath("//c:substanceAdministration/c:entryRelationship/c:substanceAdministration",
                      namespaces=XP)
    assert [s.xpath("c:doseQuantity/c:low/@value", namespaces=XP) for s in subs] == [["1"], ["2"]]
    assert root.xpath(f"//c:templateId[@root='{cda.MODE_SPLIT}']", namespaces=XP)
    parsed = parse_document(data)
    assert parsed.problems == [] and parsed.prescription is not None
    assert parsed.prescription.lines[0].phases == (phase,)
    words = "1 comprimé le matin et 2 comprimés le soir"
    assert words + " pendant 10 jours" in " ".join(root.xpath("//c:text//text()", namespaces=XP))
    assert dosage_lines(line) == [words[0].upper() + words[1:]]

    # A dose for the morning only: not something the model holds; said, not dropped silently.
    no_dose = etree.fromstring(data)
    second = no_dose.xpath("//c:substanceAdministration/c:entryRelationship"
                           "/c:substanceAdministration/c:doseQuantity", namespaces=XP)[1]
    second.getparent().remove(second)
    parsed = parse_document(etree.tostring(no_dose))
    assert [p.message for p in parsed.problems] == [
        "line 1 phase 1: doses given for some times of day only cannot be held by the"
        " gateway's model; the first dose is kept for all, the narrative says the rest"]
    assert parsed.prescription is not None
    assert parsed.prescription.lines[0].phases[0].dose == one

    for bad, words in ((dataclasses.replace(phase, doses=(one,)), "1 doses for 2 times"),
                       (dataclasses.replace(phase, dose=one), "both one dose and a dose per")):
        with pytest.raises(BuildError, match=words):
            _build(samples.prescription(lines=(dataclasses.replace(line, phases=(bad,)),)))


def test_build_refuses_what_cannot_be_written() -> None:
    line = samples.prescription().lines[0]
    with pytest.raises(BuildError, match="line 1: 'non substituable' needs a reason"):
        _build(samples.prescription(lines=(dataclasses.replace(line, substitutable=False),)))
    with pytest.raises(BuildError, match="at least one line"):
        _build(samples.prescription(lines=()))


def test_markup_in_values_stays_text() -> None:
    # The builder writes markup as text: every value from a mail form must come back as it was
    # typed, never as elements of the document.
    evil = 'X</family><family>Y & <!-- "z" --> ]]> \'q\''
    p = samples.prescription(
        patient=dataclasses.replace(samples.PATIENT, birth_name=evil, address=evil),
        lines=(dataclasses.replace(samples.prescription().lines[0],
                                   product=Product(label=evil, cis="60234100"),
                                   dosage_text=evil),), notes=evil, bizone=False)
    got = parse_document(_build(p)).prescription
    assert got is not None
    assert got.patient.birth_name == evil and got.notes == evil
    assert got.lines[0].product.label == evil and got.lines[0].dosage_text == evil


@pytest.mark.parametrize("bad", ["\x01", "\x0b", "\ud800", "\ufffe"])
def test_characters_xml_cannot_hold_are_refused(bad: str) -> None:
    p = samples.prescription(notes=f"avant{bad}après")
    with pytest.raises(BuildError, match="character an XML document cannot hold"):
        _build(p)
    d = dataclasses.replace(samples.dispensation(), notes=f"avant{bad}après")
    with pytest.raises(BuildError, match="character an XML document cannot hold"):
        build_dispensation(d)


def _broken(path: Path, xpath: str) -> bytes:
    tree = etree.parse(str(path))
    for el in tree.xpath(xpath, namespaces=XP):
        el.getparent().remove(el)
    return etree.tostring(tree)


def test_own_rules_report_each_problem_with_location(kit: Kit) -> None:
    data = _build()
    data = data.replace(b"279035121518989", b"279035121518988")  # wrong INS key
    data = data.replace(b'extension="810001234565"', b'extension="810001234566"')  # RPPS Luhn
    data = data.replace(b'code="60234100"', b'code="6023410"')  # CIS shape
    data = data.replace(b'<repeatNumber value="3"/>', b'<repeatNumber value="30"/>')
    report = kit.validate(data)
    rules = report.layer("rules")
    found = {p.message.split(": ", 1)[-1][:40]: p.severity for p in rules.problems}
    messages = " | ".join(f"[{p.severity}] {p}" for p in rules.problems)
    # Errors where the official specification makes one (the INS key, the CIS's shape)...
    assert "[error] /ClinicalDocument/recordTarget/patientRole: patient INS" in messages
    assert "INS key does not match" in messages and "a CIS code is 8 digits" in messages
    assert any(p.severity == "error" and "CIS" in p.message for p in rules.problems)
    # ...warnings for the rest (the official eDISP example's pharmacist fails the RPPS key).
    assert "[warning] /ClinicalDocument/author/assignedAuthor: prescriber RPPS" in messages
    assert "RPPS check digit (Luhn) does not match" in messages
    assert "[warning]" in messages and "30 renewals is out of range" in messages
    assert any(p.location.endswith("entry[2]/substanceAdministration") for p in rules.problems)
    assert found and rules.status == "failed"


def test_cis_unknown_to_the_drug_reference(kit: Kit) -> None:
    class Ref:
        def is_loaded(self) -> bool:
            return True

        def by_cis(self, cis: str) -> object | None:
            return None if cis == "65143010" else object()

        def by_cip13(self, cip13: str) -> object | None:
            return object()

    report = kit.validate(_build(), drugs=Ref())
    assert [(p.severity, p.message) for p in report.layer("rules").problems] == [
        ("warning", "line 2: CIS 65143010 is not in the drug reference (BDPM)")]
    assert report.ok  # a warning: the document is not wrong, our reference may be old
    # When the gateway must deliver it (a doctor's document to register), it is an error.
    report = kit.validate(_build(), drugs=Ref(), deliver=True)
    assert [(p.severity, p.message) for p in report.layer("rules").problems] == [
        ("error", "line 2: CIS 65143010 is not in the drug reference (BDPM)")]
    assert not report.ok


def test_missing_kit_layers_are_skipped_not_passed(tmp_path: Path) -> None:
    report = validate_document(_build(), schema=tmp_path / "none.xsd",
                               schematron_dir=tmp_path)
    assert [(layer.name, layer.status) for layer in report.layers] == [
        ("schema", "skipped"), ("volet", "skipped"), ("IHE", "skipped"),
        ("ModelesDeContenusCDA", "skipped"), ("Modeles_ANS", "skipped"),
        ("StrucMin", "skipped"), ("rules", "passed")]
    assert not report.ok
    assert "not found" in report.layers[0].note
    assert "the kit has no schematron for eP-MED-DM 2024.01" in report.layers[1].note


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&lol3;</title></ClinicalDocument>"""
XXE = b"""<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&xxe;</title></ClinicalDocument>"""


@pytest.mark.parametrize("data", [BILLION_LAUGHS, XXE], ids=["billion-laughs", "xxe"])
def test_hostile_xml_is_refused(data: bytes, kit: Kit) -> None:
    with pytest.raises(UnsafeXML, match="DOCTYPE|entit"):
        parse_document(data)
    with pytest.raises(UnsafeXML):
        kit.validate(data)


def test_not_a_prescription_is_refused() -> None:
    with pytest.raises(DocumentError, match="not a CDA document"):
        parse_document(b"<html/>")
    with pytest.raises(DocumentError, match="neither a prescription"):
        parse_document(b'<ClinicalDocument xmlns="urn:hl7-org:v3"/>')


def test_cli_validate_and_parse(gateway_home: Path, kit: Kit, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    cfg = str(gateway_home / "config.toml")
    good = tmp_path / "good.xml"
    good.write_bytes(_build())
    assert main(["cda", "validate", str(good), "--fast", "--config", cfg]) == 0
    out = capsys.readouterr().out
    assert "schema: passed" in out and "rules: passed" in out
    assert "volet: passed (CI-SIS_EP-MED-DM_2024.01.sch)" in out
    assert out.strip().endswith("prescription 2024.01 valid")
    bad = tmp_path / "bad.xml"
    bad.write_bytes(_broken(kit.examples / "eP-MED-DM_2024.01_PosoStruct.xml",
                            "//c:component[c:section/c:templateId/@root="
                            "'1.2.250.1.213.1.1.2.243']"))
    assert main(["cda", "validate", str(bad), "--fast", "--json", "--config", cfg]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["valid"] is False
    assert result["layers"][1]["layer"] == "volet"
    assert result["layers"][1]["status"] == "failed" and result["layers"][1]["errors"] == 1
    assert result["layers"][1]["problems"][0]["severity"] == "error"
    hostile = tmp_path / "hostile.xml"
    hostile.write_bytes(XXE)
    assert main(["cda", "validate", str(hostile), "--config", cfg]) == 1
    err = capsys.readouterr().err
    assert "DOCTYPE" in err and err.count("\n") == 1
    assert main(["cda", "parse", str(good), "--json", "--config", cfg]) == 0
    parsed = json.loads(capsys.readouterr().out)
    assert parsed["kind"] == "prescription"
    assert len(parsed["prescription"]["lines"]) == 3
    assert main(["cda", "validate", str(tmp_path / "missing.xml"), "--config", cfg]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_dates_are_coherent_rule(kit: Kit) -> None:
    p = samples.prescription(validity_end=dt.date(2026, 1, 1))
    report = kit.validate(_build(p))
    assert any("end of validity 2026-01-01 is before" in p.message and p.severity == "warning"
               for p in report.layer("rules").problems)


def test_an_author_without_structure_is_refused_before_writing_an_invalid_document() -> None:
    """CI-SIS documents name the author's structure and the custodian by their national id
    (StrucMin: custodian id [1..1], no nullFlavor): no structure in the directory, no document."""
    doctor = dataclasses.replace(samples.DOCTOR, structure=None)
    with pytest.raises(BuildError, match="has no structure"):
        _build(samples.prescription(author=doctor))
    with pytest.raises(BuildError, match="has no structure"):
        build_dispensation(dataclasses.replace(
            samples.dispensation(), author=dataclasses.replace(samples.PHARMACIST,
                                                               structure=None)))


def test_an_adapted_posology_the_edisp_cannot_hold_is_refused() -> None:
    """The eDISP's FR-Traitement needs a frequency (an SXPR_TS); one phase, one time of day."""
    from gateway.documents.model import DispensingKind

    line = samples.dispensation().lines[1]
    for phases, words in (((Phase(duration_days=3),), "says how often or when"),
                          ((Phase(frequency=Frequency(1)), Phase(frequency=Frequency(2))),
                           "several phases")):
        adapted = dataclasses.replace(line, kind=DispensingKind.ADAPTED, phases=phases)
        with pytest.raises(BuildError, match=words):
            build_dispensation(dataclasses.replace(samples.dispensation(), lines=(adapted,)))
