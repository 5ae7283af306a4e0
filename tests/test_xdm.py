"""XDM packages: pack -> read round trip, the official examples, and hostile packages."""

from __future__ import annotations

import io
import zipfile

import pytest
from xdm_helpers import (
    DISPENSATION,
    EXAMPLES,
    LAB,
    PRESCRIPTION,
    entries,
    example_doc,
    example_zip,
    lie_about_size,
    rezip,
    set_flag,
)

from gateway.xdm import (
    InvalidMetadata,
    InvalidPackage,
    Limits,
    MissingMetadata,
    cda_entry,
    pack,
    read_package,
)
from gateway.xdm.header import hl7_to_utc, sha1_hex

META = "IHE_XDM/SUBSET01/METADATA.XML"
DOC1 = "IHE_XDM/SUBSET01/DOC0001.XML"


@pytest.mark.parametrize("name", EXAMPLES)
def test_official_example_opens_and_checks(shared_dir, name):
    pkg = read_package(example_zip(shared_dir, name))
    assert len(pkg.documents) == 1
    doc = pkg.documents[0]
    assert doc.path == DOC1
    assert doc.entry.hash == sha1_hex(doc.data)
    assert doc.entry.size == len(doc.data)
    assert doc.entry.patient_id.endswith("&ISO^NH")
    assert pkg.signatures == ()


@pytest.mark.parametrize("name", EXAMPLES)
def test_header_mapping_matches_the_official_metadata(shared_dir, name):
    """Our CDA-header extractor gives what the ANS wrote in each official METADATA.XML."""
    official = read_package(example_zip(shared_dir, name)).documents[0]
    ours = cda_entry(official.data, entry_id="urn:uuid:x", uri="DOC0001.XML")
    o = official.entry
    for field in ("unique_id", "patient_id", "hash", "size", "creation_time", "language_code",
                  "type_code", "confidentiality", "facility_type", "practice_setting",
                  "legal_authenticator", "service_start", "service_stop", "source_patient_id",
                  "source_patient_info"):
        assert getattr(ours, field) == getattr(o, field), field
    assert ours.class_code == o.class_code
    assert ours.format_code.code == o.format_code.code
    assert ours.event_codes == o.event_codes
    assert [a.institution for a in ours.authors] == [a.institution for a in o.authors]
    assert [a.specialty for a in ours.authors] == [a.specialty for a in o.authors]
    # Persons identically; the DP software's name is capitalised differently in one place.
    assert [a.person.lower() for a in ours.authors] == [a.person.lower() for a in o.authors]


def test_bom_and_crlf_bytes_are_kept_and_hashed_as_is(shared_dir):
    doc = example_doc(shared_dir, PRESCRIPTION)
    assert doc.startswith(b"\xef\xbb\xbf") and b"\r\n" in doc
    pkg = read_package(pack([doc]))
    assert pkg.documents[0].data == doc
    assert pkg.documents[0].entry.hash == sha1_hex(doc)


def test_pack_read_round_trip_two_documents(shared_dir):
    prescription = example_doc(shared_dir, PRESCRIPTION)
    lab = example_doc(shared_dir, LAB)  # same test patient, a document we do not interpret
    data = pack([prescription, lab])
    files = entries(data)
    assert set(files) == {"README.TXT", "INDEX.HTM", "IHE_XDM/", "IHE_XDM/SUBSET01/", DOC1,
                          "IHE_XDM/SUBSET01/DOC0002.XML", META}
    assert b"\r\n" in files["README.TXT"] and b"DOC0002.XML" in files["INDEX.HTM"]
    pkg = read_package(data)
    a, b = pkg.documents
    assert (a.data, b.data) == (prescription, lab)
    assert a.entry.class_code.code == "42" and a.entry.format_code.code == "urn:ihe:pharm:pre:2010"
    assert b.entry.class_code.code == "10" and b.entry.type_code.code == "11502-2"
    assert a.entry.unique_id == "1.2.250.1.213.1.1.1.39.2024.2.1"
    assert a.entry.patient_id == "279035121518989^^^&1.2.250.1.213.1.4.10&ISO^NH"
    assert a.entry.creation_time == "20231201083000"  # 09:30 +01:00 in UTC
    assert a.entry.language_code == "fr-FR"
    assert a.entry.confidentiality[0].code == "N"
    assert a.entry.facility_type.code == "SA07"
    assert a.entry.practice_setting.code == "AMBULATOIRE"
    assert a.entry.authors[0].person.startswith("801234567897^PIOU^Romain^")
    assert a.entry.legal_authenticator.startswith("807505123456^PIOU^Romain")
    assert "PID-7|19790328" in a.entry.source_patient_info
    ss = pkg.submission_set
    assert ss.patient_id == a.entry.patient_id and ss.title == "2 documents"
    assert ss.source_id == "1.2.250.1.71.4.2.2.1750512345"
    members = {x.target for x in pkg.associations if x.source == ss.entry_id}
    assert members == {a.entry.entry_id, b.entry.entry_id}


def test_pack_refuses_two_patients_and_unknown_types(shared_dir):
    with pytest.raises(InvalidPackage, match="one patient"):
        pack([example_doc(shared_dir, PRESCRIPTION), example_doc(shared_dir, DISPENSATION)])
    doc = example_doc(shared_dir, PRESCRIPTION).replace(b'code="57833-6"', b'code="99999-9"', 1)
    with pytest.raises(MissingMetadata, match="document 1: .*99999-9"):
        pack([doc])
    no_ins = example_doc(shared_dir, PRESCRIPTION).replace(b"1.2.250.1.213.1.4.10", b"1.2.3")
    with pytest.raises(MissingMetadata, match="no INS"):
        pack([no_ins])
    with pytest.raises(InvalidPackage, match="at least one"):
        pack([])


def test_hl7_times():
    assert hl7_to_utc("20231201093000+0100") == "20231201083000"
    assert hl7_to_utc("20240101003000+0200") == "20231231223000"
    assert hl7_to_utc("20231201") == "20231201"


# --- hostile packages -------------------------------------------------------------------


@pytest.fixture
def good(shared_dir) -> bytes:
    return example_zip(shared_dir, PRESCRIPTION)


def refused(data: bytes, match: str, limits: Limits | None = None) -> None:
    with pytest.raises((InvalidPackage, InvalidMetadata), match=match):
        read_package(data, limits)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../evil.txt", "'..'"),
        ("IHE_XDM/../../evil.txt", "'..'"),
        ("/etc/passwd", "absolute"),
        ("C:/Windows/x.txt", "absolute"),
        ("IHE_XDM\\SUBSET01\\x.txt", "backslash"),
        ("IHE_XDM//x.txt", "empty path segment"),
    ],
)
def test_names_escaping_the_folder_are_refused(good, name, why):
    refused(rezip(good, extra=[(name, b"x")]), why)


def test_duplicate_entries_are_refused(good):
    buf = io.BytesIO(good)
    with zipfile.ZipFile(buf, "a") as zf, pytest.warns(UserWarning):
        zf.writestr(DOC1, b"<x/>")
    refused(buf.getvalue(), "appears twice")


def test_too_many_entries(good):
    many = rezip(good, extra=[(f"extra/{i}.txt", b"x") for i in range(10)])
    refused(many, "16 entries .* limit of 15", Limits(max_entries=15))
    read_package(many, Limits(max_entries=16))


def test_declared_size_over_the_limit_is_refused_before_decompressing(good):
    big = rezip(good, extra=[("IHE_XDM/SUBSET01/BIG.BIN", b"\0" * 3_000_000)])
    refused(big, "declares .* over the limit", Limits(max_total_bytes=2_000_000))


def test_zip_bomb_lying_about_its_size_is_caught_while_decompressing(good):
    bomb = rezip(good, extra=[("IHE_XDM/SUBSET01/BOMB.BIN", b"\0" * 5_000_000)])
    bomb = lie_about_size(bomb, "IHE_XDM/SUBSET01/BOMB.BIN", 1000)
    with pytest.raises(InvalidPackage, match="BOMB.BIN"):
        read_package(bomb)


@pytest.mark.parametrize("name", ["IHE_XDM/SUBSET01/INNER.ZIP", "x.tar", "doc.gz"])
def test_nested_archives_by_name(good, name):
    refused(rezip(good, extra=[(name, b"hello")]), "archive inside the archive")


def test_nested_archive_by_content(good):
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("a.txt", "a")
    refused(rezip(good, extra=[("IHE_XDM/SUBSET01/DOC0009.XML", inner.getvalue())]),
            "archive inside the archive")


def test_encrypted_entry_is_refused(good):
    refused(set_flag(good, DOC1, 0x1), "encrypted")


def test_hash_and_size_mismatch(good):
    doc = entries(good)[DOC1]
    changed = doc.replace(b"PAT-TROIS", b"PAT-TRO1S", 1)
    refused(rezip(good, {DOC1: changed}), "SHA-1 is .* METADATA.XML says")
    refused(rezip(good, {DOC1: doc + b" "}), "size is 227489 bytes")


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        (b"XDSDocumentEntry.uniqueId", None, "has no uniqueId"),
        (b'<ns2:Slot name="hash">', b'<ns2:Slot name="nohash">', "has no hash"),
        (b'<ns2:Slot name="size">', b'<ns2:Slot name="nosize">', "has no size"),
        (b'<ns2:Slot name="URI">', b'<ns2:Slot name="nouri">', "has no URI"),
        (b"urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427", b"urn:uuid:0", "has no patientId"),
        (b"urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d", b"urn:uuid:0", "has no formatCode"),
        (b"<ns2:Value>DOC0001.XML</ns2:Value>", b"<ns2:Value>../DOC0001.XML</ns2:Value>",
         "URI '../DOC0001.XML' refused"),
        (b"<ns2:Value>DOC0001.XML</ns2:Value>", b"<ns2:Value>DOC0002.XML</ns2:Value>",
         "not in the ZIP"),
        (b"AssociationType:HasMember", b"AssociationType:Other", "not a member"),
    ],
)
def test_missing_or_wrong_metadata(good, old, new, match):
    meta = entries(good)[META]
    if new is None:  # drop the whole ExternalIdentifier carrying `old`
        start = meta.rindex(b"<ns2:ExternalIdentifier", 0, meta.index(old))
        end = meta.index(b"</ns2:ExternalIdentifier>", start) + len(b"</ns2:ExternalIdentifier>")
        meta = meta[:start] + meta[end:]
    else:
        assert old in meta
        meta = meta.replace(old, new)
    refused(rezip(good, {META: meta}), match)


def test_metadata_with_a_dtd_is_refused(good):
    meta = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]>' + entries(good)[META].lstrip()
    refused(rezip(good, {META: meta}), "DOCTYPE|not well-formed")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"not a zip at all", "not a ZIP"),
        (b"", "not a ZIP"),
    ],
)
def test_not_a_zip(data, match):
    refused(data, match)


def test_no_metadata(good):
    refused(rezip(good, {META: None}), "no IHE_XDM/<SUBSET>/METADATA.XML")


def test_oversized_package(good):
    refused(good, "over the limit", Limits(max_package_bytes=1000))
