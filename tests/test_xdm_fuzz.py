"""Fuzzing: whatever bytes arrive, reading a package gives a package or a one-line refusal, and
verifying gives a result object — never another exception."""

from __future__ import annotations

import datetime as dt
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from xdm_helpers import PRESCRIPTION, entries, example_zip, fix_metadata, rezip

from gateway.errors import GatewayError
from gateway.signature import Signer, sign_package, verify_package
from gateway.xdm import read_package

META = "IHE_XDM/SUBSET01/METADATA.XML"
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")
FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")), deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def never_trusted(cert, intermediates, at):
    return False, "untrusted issuer (fuzzing)"


@pytest.fixture(scope="module")
def package(shared_dir) -> bytes:
    return example_zip(shared_dir, PRESCRIPTION)


def flip(data: bytes, changes: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for pos, value in changes:
        out[pos % len(out)] = value
    return bytes(out)


def check(data: bytes) -> None:
    try:
        read_package(data)
    except GatewayError as exc:
        assert "\n" not in str(exc)
    result = verify_package(data, never_trusted)
    assert not result.valid and result.reason


@FUZZ
@given(st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1, max_size=8))
def test_zip_bytes_flipped(package, changes):
    check(flip(package, changes))


@FUZZ
@given(st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1, max_size=8))
def test_metadata_bytes_flipped(package, changes):
    meta = entries(package)[META]
    check(rezip(package, {META: flip(meta, changes)}))


@FUZZ
@given(st.binary(max_size=2000))
def test_arbitrary_bytes(data):
    check(data)


def accept_any(cert, intermediates, at):
    """Fuzzing only: accept the certificate so that the signature itself gets parsed."""
    return True, "valid"


@pytest.fixture(scope="module")
def signed(package) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fuzz")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    data = sign_package(package, Signer(key, (cert,)))
    assert verify_package(data, accept_any).valid
    return data


@FUZZ
@given(st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1, max_size=6))
def test_signature_bytes_flipped(signed, changes):
    path = "IHE_XDM/SUBSET01/DOC0002.XML"
    sig = entries(signed)[path]
    mutated = flip(sig, changes)
    result = verify_package(fix_metadata(signed, path, mutated), accept_any)
    assert result.reason
    if result.valid:  # only a change outside the signed content (the XML declaration) is moot
        start = sig.index(b"<ds:Signature")
        assert mutated[start:] == sig[start:], result
