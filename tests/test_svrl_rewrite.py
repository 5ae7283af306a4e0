"""The rewritten schematron XSLT (documents.svrl_rewrite) reports exactly what the ANS chain's
own XSLT reports: same failed asserts and reports, same locations, same order.

On a small schematron written for the purpose (every rewrite and every case where one must
not apply: an attribute context, a numeric predicate that fails on a bad value, a rule
matching the document node, value sets by literal and by variable, a rule's local variable
in a shared assert), and on three of the real generic layers (IHE, ModelesDeContenusCDA,
Modeles_ANS) over the official examples, a generated prescription and broken copies of them.
StrucMin's chain output takes tens of seconds to compile: `bench/bench_documents.py` compares
it on the same documents."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from conftest import SCHEMATRON_CACHE
from lxml import etree

from gateway.documents import samples, schematron, svrl_rewrite
from gateway.documents.build import assign_ids, build_prescription
from gateway.xmlsafe import parse_xml

SYNTH = """<?xml version="1.0" encoding="UTF-8"?>
<schema xmlns="http://purl.oclc.org/dsdl/schematron" queryBinding="xslt2">
  <ns prefix="cda" uri="urn:hl7-org:v3"/>
  <let name="jdv_sex" value="'vs/sex.xml'"/>
  <pattern id="byTemplateId">
    <rule context="*[cda:templateId/@root='1.2.3']">
      <assert test="cda:code/@code = '42'">tid 1.2.3: code must be 42</assert>
      <report test="cda:code/@code = 'warn'" role="warning">tid 1.2.3: a warning</report>
    </rule>
    <rule context="cda:section">
      <assert test="cda:title">a section without templateId 1.2.3 needs a title</assert>
    </rule>
  </pattern>
  <pattern id="fromTheRoot">
    <rule context="//cda:doc[cda:typeId]/cda:patient">
      <let name="sex" value="string(cda:sex/@code)"/>
      <assert test="$sex = doc('vs/sex.xml')//code/@v">patient: sex not in the value set</assert>
      <assert test="cda:name">patient: a name</assert>
    </rule>
    <rule context="//cda:doc[cda:typeId]/cda:author/cda:person">
      <let name="sex" value="string(cda:sex/@code)"/>
      <assert test="$sex = doc('vs/sex.xml')//code/@v">patient: sex not in the value set</assert>
      <assert test="cda:name">patient: a name</assert>
    </rule>
    <rule context="//cda:doc[cda:typeId]//cda:code[@code = doc('vs/sex.xml')//code/@v]">
      <assert test="false()">a sex code where a code is expected</assert>
    </rule>
    <rule context="//cda:doc[cda:typeId]/cda:author">
      <assert test="document($jdv_sex)//code[@v = current()/cda:person/cda:sex/@code]">author:
        sex by the variable's value set</assert>
    </rule>
  </pattern>
  <pattern id="attributes">
    <rule context="@code">
      <assert test="string-length(.) lt 3">never fires: attributes are not visited</assert>
    </rule>
  </pattern>
  <pattern id="numbers">
    <rule context="cda:value[@value > 3]">
      <assert test="@unit">a value over 3 needs a unit</assert>
    </rule>
  </pattern>
  <pattern id="document">
    <rule context="/">
      <assert test="cda:doc">the root is cda:doc</assert>
    </rule>
  </pattern>
  <pattern id="empty"/>
</schema>
"""
VALUE_SET = "<vs><code v='F'/><code v='M'/></vs>"
DOCS = {
    "valid": """<doc xmlns="urn:hl7-org:v3"><typeId/>
        <section><templateId root="1.2.3"/><code code="42"/></section>
        <section><title/></section>
        <patient><sex code="F"/><name/></patient>
        <author><person><sex code="M"/><name/></person></author>
        <value value="2"/></doc>""",
    "broken": """<doc xmlns="urn:hl7-org:v3"><typeId/>
        <section><templateId root="1.2.3"/><code code="41"/></section>
        <section><templateId root="1.2.3"/><code code="warn"/><title/></section>
        <section/>
        <patient><sex code="X"/></patient>
        <author><person><sex code="Z"/></person></author>
        <other><code code="F"/></other>
        <value value="5"/><value value="abc"/></doc>""",
    "other root": """<other xmlns="urn:hl7-org:v3"><section/><patient/></other>""",
    "no typeId": """<doc xmlns="urn:hl7-org:v3"><patient/><section/></doc>""",
}


def _report(engine: schematron.Engine, kit: Path, layer: schematron.Layer, node: object,
            cache: Path, rewrite: bool) -> list[tuple[str, str, str]]:
    return [(p.location, p.message, p.severity)
            for p in engine.run(kit, layer, node, cache, rewrite=rewrite)]


@pytest.fixture(scope="module")
def synth_kit(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    kit = tmp_path_factory.mktemp("kit")
    (kit / "moteur").symlink_to(shared_dir / "ci-sis/schematrons/moteur")
    (kit / "profils" / "vs").mkdir(parents=True)
    (kit / "profils" / "synth.sch").write_text(SYNTH)
    (kit / "profils" / "vs" / "sex.xml").write_text(VALUE_SET)
    return kit


def test_the_rewrite_reports_what_the_chain_reports(synth_kit: Path, tmp_path: Path) -> None:
    engine = schematron.engine()
    layer = schematron.Layer("Synth", "profils/synth.sch")
    seen = {}
    for name, text in DOCS.items():
        node = engine.document(parse_xml(text.encode()))
        plain = _report(engine, synth_kit, layer, node, tmp_path, rewrite=False)
        assert _report(engine, synth_kit, layer, node, tmp_path, rewrite=True) == plain, name
        seen[name] = plain
    assert seen["valid"] == []
    messages = [m for _loc, m, _sev in seen["broken"]]
    assert messages == [
        "tid 1.2.3: code must be 42", "tid 1.2.3: code must be 42", "tid 1.2.3: a warning",
        "a section without templateId 1.2.3 needs a title",
        "patient: sex not in the value set", "patient: a name",
        "author: sex by the variable's value set",
        "patient: sex not in the value set", "patient: a name",
        "a sex code where a code is expected", "a value over 3 needs a unit"]
    assert [loc for loc, _m, _sev in seen["broken"]][-3:] == [
        "/doc/author/person", "/doc/other/code", "/doc/value"]
    assert [m for _loc, m, _sev in seen["other root"]] == [
        "a section without templateId 1.2.3 needs a title", "the root is cda:doc"]

    # ... and the rewrites did apply (else this test would compare the chain with itself).
    xslt = (tmp_path / schematron.kit_key(synth_kit)
            / f"profils__synth.sch.rewrite-{svrl_rewrite.VERSION}.xsl").read_text()
    assert f"key('{svrl_rewrite.KEY}', ('1.2.3'))" in xslt
    assert "select=\"//cda:doc[cda:typeId]/(cda:patient | cda:author/cda:person |" in xslt
    assert xslt.count('select="/" mode=') == 3  # attributes, numbers, the document node
    assert "svrl:active-pattern" not in xslt and "svrl:fired-rule" not in xslt
    assert sorted(svrl_rewrite.documents(xslt).values()) == ["vs/sex.xml", "vs/sex.xml"]
    assert "document('vs/sex.xml')" in xslt  # the variable's document() stays document()
    assert xslt.count(f'<xsl:call-template name="{svrl_rewrite.ASSERT_TEMPLATE}') == 4
    assert '<xsl:with-param name="sex" select="$sex"/>' in xslt


def test_a_layer_that_cannot_evaluate_a_document_says_so(synth_kit: Path,
                                                         tmp_path: Path) -> None:
    """A Saxon error on the document (here a value set the kit lacks, read by an assert) is
    the layer's error on that document, not a failed validator."""
    (synth_kit / "profils" / "broken.sch").write_text(
        SYNTH.replace("vs/sex.xml')//code/@v\">patient", "vs/none.xml')//code/@v\">patient"))
    engine = schematron.engine()
    node = engine.document(parse_xml(DOCS["broken"].encode()))
    for rewrite in (False, True):
        problems = engine.run(synth_kit, schematron.Layer("Broken", "profils/broken.sch"), node,
                              tmp_path, rewrite=rewrite)
        assert len(problems) == 1 and problems[0].severity == "error"
        assert problems[0].message.startswith("the layer cannot evaluate the document:")
        assert "none.xml" in problems[0].message


def _broken_copies(data: bytes, n: int, seed: int) -> list[bytes]:
    """Copies of `data` with elements removed and attributes removed or changed."""
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        tree = parse_xml(data)
        elements = list(tree.getroot().iter(etree.Element))[1:]
        for el in rnd.sample(elements, 12):
            r = rnd.random()
            parent = el.getparent()
            if parent is not None and r < 0.4:
                parent.remove(el)
            elif el.attrib and r < 0.8:
                del el.attrib[rnd.choice(list(el.attrib))]
            elif el.attrib:
                el.set(rnd.choice(list(el.attrib)), rnd.choice(["X", "0", "UNK"]))
        out.append(etree.tostring(tree))
    return out


@pytest.mark.parametrize("name", ["IHE", "ModelesDeContenusCDA", "Modeles_ANS"])
def test_the_generic_layers_report_the_same_once_rewritten(name: str, shared_dir: Path) -> None:
    kit = shared_dir / "ci-sis/schematrons"
    layer = next(g for g in schematron.GENERIC_LAYERS if g.name == name)
    engine = schematron.engine()
    p = assign_ids(samples.prescription())
    docs = [build_prescription(p, b"%PDF-1.4\n", b"\x89PNG")]
    docs += [f.read_bytes() for f in sorted((shared_dir / "ci-sis/ExemplesCDA").glob("*.xml"))]
    docs += [c for i, d in enumerate(docs) for c in _broken_copies(d, 2, i)]
    found = 0
    for data in docs:
        node = engine.document(parse_xml(data))
        plain = _report(engine, kit, layer, node, SCHEMATRON_CACHE, rewrite=False)
        assert _report(engine, kit, layer, node, SCHEMATRON_CACHE, rewrite=True) == plain
        found += len(plain)
    assert found > 0  # the broken copies make the layer fire


@pytest.mark.parametrize("kind, version", [("prescription", "2022.01"),
                                           ("prescription", "2023.01"),
                                           ("prescription", "2024.01"),
                                           ("dispensation", "2024.01")])
def test_the_volets_report_the_same_once_rewritten(kind: str, version: str,
                                                   shared_dir: Path) -> None:
    """The volet decides refusals (documents from outside): its rewrite must report what the
    chain's XSLT does, on documents of its model and version and on broken copies of them."""
    from gateway.documents.build import build_dispensation

    kit = shared_dir / "ci-sis/schematrons"
    layer = schematron.volet_layer(kind, version)
    engine = schematron.engine()
    prefix = "eDISP-MED" if kind == "dispensation" else "eP-MED-DM"
    docs = [f.read_bytes() for f in sorted((shared_dir / "ci-sis/ExemplesCDA").glob(
        f"{prefix}_{version}*.xml"))]
    if version == "2024.01":
        docs.append(build_dispensation(samples.dispensation()) if kind == "dispensation" else
                    build_prescription(assign_ids(samples.prescription()), b"%PDF-1.4\n",
                                       b"\x89PNG"))
    assert docs
    docs += [c for i, d in enumerate(docs) for c in _broken_copies(d, 8, 100 + i)]
    found = 0
    for data in docs:
        node = engine.document(parse_xml(data))
        plain = _report(engine, kit, layer, node, SCHEMATRON_CACHE, rewrite=False)
        assert _report(engine, kit, layer, node, SCHEMATRON_CACHE, rewrite=True) == plain
        found += len(plain)
    assert found > 0
