"""METADATA.XML written as text (gateway.xdm.metadata): the same bytes lxml's element API wrote
for the same entries, whatever the values hold, read back to the same entries."""

from __future__ import annotations

import lxml_metadata as ref
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree
from xdm_helpers import EXAMPLES, example_zip

from gateway.xdm import Association, Author, Code, DocumentEntry, SubmissionSet
from gateway.xdm import model as m
from gateway.xdm.metadata import (
    InvalidMetadata,
    append_objects,
    association,
    extrinsic_object,
    read_metadata,
    write_metadata,
)
from gateway.xdm.package import read_package


@pytest.mark.parametrize("name", EXAMPLES)
def test_official_metadata_rewritten_as_lxml_wrote_it(shared_dir, name):
    pkg = read_package(example_zip(shared_dir, name))
    entries = [d.entry for d in pkg.documents]
    ours = write_metadata(pkg.submission_set, entries, pkg.associations)
    assert ours == ref.write_metadata(pkg.submission_set, entries, pkg.associations)
    assert read_metadata(ours) == (pkg.submission_set, tuple(entries), pkg.associations)


@pytest.mark.parametrize("name", EXAMPLES)
def test_objects_appended_to_a_foreign_metadata_as_before(shared_dir, name):
    pkg = read_package(example_zip(shared_dir, name))
    entry = pkg.documents[0].entry
    assoc = Association("urn:uuid:1", m.SIGNS, entry.entry_id, pkg.submission_set.entry_id)
    original = pkg.files[pkg.metadata_path]
    ours = append_objects(original, [extrinsic_object(entry, "Signature09"), association(assoc)])
    theirs = append_objects(original, [ref.extrinsic_object(entry, "Signature09"),
                                       ref.association(assoc)])
    assert ours == theirs


# Any character XML 1.0 carries, with the ones that need escaping made likely.
_XML_CHARS = st.characters(blacklist_categories=("Cs",),
                           blacklist_characters=[chr(c) for c in range(32) if c not in (9, 10, 13)]
                           + ["\ufffe", "\uffff"])
_TEXT = st.one_of(st.text(_XML_CHARS, max_size=12),
                  st.text(st.sampled_from('&<>"\'\t\n\r ^é€𝄞]]>'), max_size=12))
_OPT = st.one_of(st.none(), _TEXT)
_CODE = st.builds(Code, _TEXT, _TEXT, _TEXT)
_AUTHOR = st.builds(Author, _OPT, _OPT, _OPT)
_ENTRY = st.builds(
    DocumentEntry, entry_id=_TEXT, uri=_TEXT, unique_id=_TEXT, patient_id=_TEXT, hash=_TEXT,
    size=st.integers(0, 10**9), mime_type=_TEXT, title=_TEXT, creation_time=_OPT,
    language_code=_OPT, class_code=st.one_of(st.none(), _CODE), type_code=_CODE,
    format_code=st.one_of(st.none(), _CODE), confidentiality=st.lists(_CODE, max_size=2).map(tuple),
    facility_type=st.one_of(st.none(), _CODE), practice_setting=st.one_of(st.none(), _CODE),
    event_codes=st.lists(_CODE, max_size=2).map(tuple),
    authors=st.lists(_AUTHOR, max_size=2).map(tuple), legal_authenticator=_OPT,
    service_start=_OPT, service_stop=_OPT, source_patient_id=_OPT,
    source_patient_info=st.lists(_TEXT, max_size=3).map(tuple),
)
_SUBMISSION = st.builds(SubmissionSet, _TEXT, _TEXT, _TEXT, _TEXT, _TEXT, _TEXT,
                        st.one_of(st.none(), _CODE), st.lists(_AUTHOR, max_size=2).map(tuple))
_ASSOC = st.builds(Association, _TEXT, st.sampled_from([m.HAS_MEMBER, m.SIGNS, "x"]), _TEXT,
                   _TEXT)


@settings(max_examples=80, deadline=None)
@given(_SUBMISSION, st.lists(_ENTRY, max_size=2), st.lists(_ASSOC, max_size=3))
def test_any_values_written_as_lxml_wrote_them(submission, entries, associations):
    ours = write_metadata(submission, entries, associations)
    assert ours == ref.write_metadata(submission, entries, associations)
    etree.fromstring(ours)  # well-formed
    for entry in entries:
        assert etree.tostring(extrinsic_object(entry, "X")) == etree.tostring(
            ref.extrinsic_object(entry, "X"))


@pytest.mark.parametrize("bad", ["\x00", "a\x1fb", "\ud800", "\uffff"])
def test_a_value_xml_cannot_carry_is_refused(bad):
    submission = SubmissionSet("urn:uuid:1", "1.2", "1.3", "INS", "20240101000000", title=bad)
    with pytest.raises(InvalidMetadata, match="control character"):
        write_metadata(submission, [], [])
