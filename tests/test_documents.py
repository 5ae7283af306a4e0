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
from gateway.documents.validate import ValidationReport, validate_document
from gateway.identifiers import OID_PRESCRIPTION_ID
from gateway.prescriptions.identifier import is_valid
from gateway.xmlsafe import UnsafeXML


@dataclasses.dataclass
class Kit:
    schema: Path
    schematrons: Path
    examples: Path

    def validate(self, data: bytes, **kw: object) -> ValidationReport:
        return validate_document(data, schema=self.schema, schematron_dir=self.schematrons,
                                 **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def kit(shared_dir: Path) -> Kit:
    k = Kit(shared_dir / "ci-sis/infrastructure/cda/CDA_extended.xsd",
            shared_dir / "ci-sis/schematrons", shared_dir / "ci-sis/ExemplesCDA")
    k.validate((k.examples / "eP-MED-DM_2024.01_PosoStruct.xml").read_bytes())  # compile once
    return k


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
def test_generated_prescriptions_pass_every_layer(kit: Kit, name: str) -> None:
    report = kit.validate(_build(VARIANTS[name]))
    assert report.kind == "prescription"
    assert [(layer.name, layer.status) for layer in report.layers] == [
        ("schema", "passed"), ("schematron", "passed"), ("rules", "passed")], _failures(report)


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


def test_official_examples_parse_with_every_line(kit: Kit) -> None:
    pres = parse_document((kit.examples / "eP-MED-DM_2024.01_PosoStruct.xml").read_bytes())
    p = pres.prescription
    assert p is not None and [x for x in pres.problems if x.severity != "info"] == []
    # What the model does not hold is said (the rate, the maximum dose, the site).
    assert {x.message.split(": ", 1)[1] for x in pres.problems} == {
        "the rate of administration (rateQuantity) is not kept by the gateway's model",
        "the maximum dose (maxDoseQuantity) is not kept by the gateway's model",
        "the site of administration (approachSiteCode) is not kept by the gateway's model"}
    # Two phases: every 8 h for 2 days, then every 12 h for 4 days (not "3 a day for 6 days").
    assert [(ph.frequency, ph.duration_days) for ph in p.lines[0].phases] == [
        (Frequency(3), 2), (Frequency(2), 4)]
    assert p.identifier == "01S2TBPZ2JCNZZYGHZ"
    assert p.patient.ins == "279035121518989" and p.author.rpps == "01234567897"
    assert [line.product.cis for line in p.lines] == ["63107752", None]
    assert p.lines[0].substitution_refusal == "MTE" and p.lines[0].renewals == 3
    assert p.lines[0].product.cip13 == "3400933516390"
    assert p.lines[1].product.magistral and "diprosone" in p.lines[1].product.label
    assert p.bizone and p.exception_drugs and p.secured
    disp = parse_document((kit.examples / "eDISP-MED_2024.01.xml").read_bytes())
    d = disp.dispensation
    assert d is not None and len(d.lines) == 2
    assert d.lines[0].substituted and d.lines[0].product.cip13 == "3400933516390"
    assert d.prescription_document_id == "1.2.250.1.213.1.1.1.39.1.1"
    # What the example lacks is reported, with where.
    assert any("e-prescription identifier" in p.message for p in disp.problems)


def test_official_examples_pass_schema_and_schematron(kit: Kit) -> None:
    for name in ("eP-MED-DM_2024.01_PosoStruct.xml", "eDISP-MED_2024.01.xml"):
        report = kit.validate((kit.examples / name).read_bytes())
        assert report.layers[0].status == "passed", name
        assert report.layers[1].status == "passed", name
    assert kit.validate((kit.examples / "eP-MED-DM_2024.01_PosoStruct.xml").read_bytes()).ok


def _broken(path: Path, xpath: str) -> bytes:
    tree = etree.parse(str(path))
    for el in tree.xpath(xpath, namespaces=XP):
        el.getparent().remove(el)
    return etree.tostring(tree)


def test_broken_official_prescription_fails_with_the_expected_message(kit: Kit) -> None:
    data = _broken(kit.examples / "eP-MED-DM_2024.01_PosoStruct.xml",
                   "//c:component[c:section/c:templateId/@root='1.2.250.1.213.1.1.2.243']")
    report = kit.validate(data)
    assert not report.ok
    sch = report.layers[1]
    assert sch.status == "failed"
    assert any("FR-Document-PDF-copie" in p.message and "structuredBody" in p.location
               for p in sch.problems)


def test_broken_official_dispensation_fails_with_the_expected_message(kit: Kit) -> None:
    data = _broken(kit.examples / "eDISP-MED_2024.01.xml", "/c:ClinicalDocument/c:code")
    report = kit.validate(data)
    assert report.layers[0].status == "failed"  # code is required by the CDA schema
    assert any("60593-1" in p.message for p in report.layers[1].problems)


def test_own_rules_report_each_problem_with_location(kit: Kit) -> None:
    data = _build()
    data = data.replace(b"279035121518989", b"279035121518988")  # wrong INS key
    data = data.replace(b'extension="810001234565"', b'extension="810001234566"')  # RPPS Luhn
    data = data.replace(b'code="60234100"', b'code="6023410"')  # CIS shape
    data = data.replace(b'<repeatNumber value="3"/>', b'<repeatNumber value="30"/>')
    report = kit.validate(data)
    rules = report.layers[2]
    messages = " | ".join(str(p) for p in rules.problems)
    assert "INS key does not match" in messages
    assert "RPPS check digit (Luhn) does not match" in messages
    assert "a CIS code is 8 digits" in messages
    assert "30 renewals is out of range" in messages
    assert any(p.location.endswith("entry[2]/substanceAdministration") for p in rules.problems)


def test_cis_unknown_to_the_drug_reference(kit: Kit) -> None:
    class Ref:
        def is_loaded(self) -> bool:
            return True

        def by_cis(self, cis: str) -> object | None:
            return None if cis == "65143010" else object()

        def by_cip13(self, cip13: str) -> object | None:
            return object()

    report = kit.validate(_build(), drugs=Ref())
    assert [p.message for p in report.layers[2].problems] == [
        "line 2: CIS 65143010 is not in the drug reference (BDPM)"]


def test_missing_kit_layers_are_skipped_not_passed(tmp_path: Path) -> None:
    report = validate_document(_build(), schema=tmp_path / "none.xsd",
                               schematron_dir=tmp_path)
    assert [layer.status for layer in report.layers] == ["skipped", "skipped", "passed"]
    assert not report.ok
    assert "not found" in report.layers[0].note


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
    assert main(["cda", "validate", str(good), "--config", cfg]) == 0
    out = capsys.readouterr().out
    assert "schema: passed" in out and "schematron: passed" in out and "rules: passed" in out
    bad = tmp_path / "bad.xml"
    bad.write_bytes(_broken(kit.examples / "eP-MED-DM_2024.01_PosoStruct.xml",
                            "//c:component[c:section/c:templateId/@root="
                            "'1.2.250.1.213.1.1.2.243']"))
    assert main(["cda", "validate", str(bad), "--json", "--config", cfg]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["valid"] is False
    assert result["layers"][1]["status"] == "failed"
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
    assert any("end of validity 2026-01-01 is before" in p.message
               for p in report.layers[2].problems)


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
