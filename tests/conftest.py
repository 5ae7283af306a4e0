"""Fixtures shared by every test module.

`shared_dir` locates the official reference material (../shared or $MSSGW_SHARED): a test that
needs it skips with a reason when it is absent, and fails instead when CI=true.
`gateway_home` is a fresh, initialised gateway in a temporary folder with its own config.toml.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from gateway.runtime.storage import Storage

if TYPE_CHECKING:
    from oidc_provider import OpenIDProvider

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() == "true"
# The CI-SIS schematrons compiled to XSLT, keyed by the kit's content (gitignored var/): a
# second session on the same kit skips the ~10 s of generation (Saxon still compiles them
# once per process: Saxon-HE cannot save a compiled stylesheet).
SCHEMATRON_CACHE = ROOT / "var" / "cache" / "schematrons"


def require(condition: bool, reason: str) -> None:
    """Skip with `reason` when `condition` is false; under CI=true fail instead."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required under CI=true: {reason}")
    pytest.skip(reason)


def require_tool(name: str) -> str:
    path = shutil.which(name)
    require(path is not None, f"{name} is not installed (Debian package; `make test` installs it)")
    assert path is not None
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    path = Path(os.environ.get("MSSGW_SHARED", ROOT.parent / "shared")).resolve()
    require(path.is_dir(), f"reference material not found at {path} (set MSSGW_SHARED)")
    return path


@pytest.fixture(scope="session")
def postgres_server():  # type: ignore[no-untyped-def]
    """A real PostgreSQL server for the whole session (tests/postgres_server.py): Debian's
    `postgresql` package, initdb + pg_ctl in a folder of its own on a free loopback port."""
    from tests.postgres_server import PostgresServer, binaries

    require(binaries() is not None, "PostgreSQL binaries not found (Debian package postgresql)")
    server = PostgresServer()
    try:
        server.start()
    except FileNotFoundError as exc:
        require(False, f"PostgreSQL cannot run here: {exc}")
    yield server
    server.stop()


@pytest.fixture
def pg_dsn(postgres_server):  # type: ignore[no-untyped-def]
    """A fresh, empty database on the session's PostgreSQL server; its libpq URI."""
    name = postgres_server.create_database()
    yield postgres_server.dsn(name)
    postgres_server.drop_database(name)


def embedded_storage(tmp_path: Path, request: pytest.FixtureRequest) -> Storage:
    """The embedded default backend: SQLite, Maildir and files under `tmp_path`."""
    from gateway.config import config_from_dict
    from gateway.runtime.embedded import EmbeddedStorage

    return EmbeddedStorage(config_from_dict({"gateway": {"domain": "test.localhost"}}, tmp_path))


# The storage contract tests (tests/test_*_contract.py, and the registry's and the DMP's tests)
# run once per backend. A backend adds its factory here: `(tmp_path, request) -> Storage`, whose
# `config` selects that backend (`gateway.runtime.storage_for(storage.config)` must open the
# same stores: the tests use it for "another process" or "another gateway"); a PostgreSQL one
# gets a fresh database from `request.getfixturevalue("pg_dsn")`.
def postgresql_storage(tmp_path: Path, request: pytest.FixtureRequest) -> Storage:
    """The PostgreSQL backend on a fresh database of the session's server (files that stay on
    a node, the CA and TLS files, under `tmp_path`)."""
    from gateway.config import config_from_dict
    from gateway.postgresql.storage import PostgreSQLStorage

    dsn = request.getfixturevalue("pg_dsn")
    return PostgreSQLStorage(config_from_dict(
        {"gateway": {"domain": "test.localhost"},
         "storage": {"backend": "postgresql", "dsn": dsn}}, tmp_path))


STORAGE_BACKENDS = [embedded_storage, postgresql_storage]


@pytest.fixture(params=STORAGE_BACKENDS, ids=lambda f: f.__name__.removesuffix("_storage"))
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """An initialised, empty store of each backend."""
    backend: Storage = request.param(tmp_path, request)
    backend.initialise()
    return backend


@pytest.fixture(scope="session")
def _gateway_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One initialised gateway home per test session (creating the CAs takes seconds)."""
    from gateway.cli import main

    home = tmp_path_factory.mktemp("template") / "gw"
    home.mkdir()
    shared = Path(os.environ.get("MSSGW_SHARED", ROOT.parent / "shared")).resolve()
    (home / "config.toml").write_text(
        "[gateway]\n"
        'domain = "test.localhost"\n'
        'hostname = "mx.test.localhost"\n'
        "workers = 1\n"
        "[imap]\n"  # ephemeral ports: parallel test runs never clash on 10143/10993
        'starttls = "127.0.0.1:0"\n'
        'tls = "127.0.0.1:0"\n'
        "[http]\n"
        'listen = "127.0.0.1:0"\n'
        "[documents]\n"
        f'cda_schema = "{shared}/ci-sis/infrastructure/cda/CDA_extended.xsd"\n'
        f'schematron_dir = "{shared}/ci-sis/schematrons"\n'
        f'schematron_cache = "{SCHEMATRON_CACHE}"\n'
        # The generic layers on documents from outside need the validator process (a minute
        # of compiling under load): test_journey runs it; the other gateways keep to "model".
        'incoming_layers = "model"\n'
    )
    assert main(["init", "--config", str(home / "config.toml")]) == 0
    return home


@pytest.fixture
def gateway_home(tmp_path: Path, _gateway_template: Path) -> Path:
    """An initialised gateway home: config.toml pointing at folders under tmp_path (a copy of
    the session's template, so every test gets its own CA files and database)."""
    home = tmp_path / "gw"
    shutil.copytree(_gateway_template, home, symlinks=True)
    return home


@pytest.fixture
def imap(gateway_home: Path):  # type: ignore[no-untyped-def]
    """The IMAP listeners of a gateway with the demo population (real directory, PKI, audit),
    on 127.0.0.1 over TLS: what the IMAP test modules talk to."""
    from tests.imap_helpers import running_server
    from tests.smtp_helpers import setup_gateway

    setup_gateway(gateway_home)
    with running_server(gateway_home) as server:
        yield server


@pytest.fixture(scope="session")
def validator_socket(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One validator process for the session (documents.validator): the four generic layers
    compiled once (Saxon needs seconds and ~300 MB for them) for the corpus tests and
    for every gateway a test starts with `incoming_layers = "all"`; stopped at the end."""
    from gateway.documents import validator
    from gateway.documents.validate import Kit

    socket = tmp_path_factory.mktemp("validator") / "validator.sock"
    kit = Kit(shared_dir / "ci-sis/infrastructure/cda/CDA_extended.xsd",
              shared_dir / "ci-sis/schematrons", SCHEMATRON_CACHE)
    address = validator.Address(socket)
    validator.start(address, kit, owner=os.getpid())
    yield socket
    validator.stop(address)


@pytest.fixture(scope="session")
def cisis_kit(shared_dir: Path, validator_socket: Path):  # type: ignore[no-untyped-def]
    """The official CI-SIS kit, its generic layers run by the session's validator process; a
    test validates with `validate_document(..., kit=cisis_kit)`."""
    from gateway.documents import validator
    from gateway.documents.validate import Kit, validate_document

    kit = validator.remote(validator.Address(validator_socket), Kit(
        shared_dir / "ci-sis/infrastructure/cda/CDA_extended.xsd",
        shared_dir / "ci-sis/schematrons", SCHEMATRON_CACHE))
    example = shared_dir / "ci-sis/ExemplesCDA/eP-MED-DM_2024.01_PosoStruct.xml"
    report = validate_document(example.read_bytes(), kit=kit)
    skipped = [f"{layer.name}: {layer.note}" for layer in report.layers
               if layer.status == "skipped"]
    require(not skipped, f"CI-SIS layers cannot run: {skipped}")
    return kit


@pytest.fixture(scope="session")
def forms_home(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory,
               validator_socket: Path) -> Path:
    """A demo gateway (`init --demo`) with the real drug reference imported from ../shared/bdpm:
    what the mail forms are read against (the import takes seconds: once per session)."""
    from gateway.cli import main
    from gateway.db import connect
    from gateway.drugs.store import import_directory

    home = tmp_path_factory.mktemp("forms")
    (home / "config.toml").write_text(
        "[gateway]\nworkers = 1\n[documents]\n"
        f'cda_schema = "{shared_dir}/ci-sis/infrastructure/cda/CDA_extended.xsd"\n'
        f'schematron_dir = "{shared_dir}/ci-sis/schematrons"\n'
        f'schematron_cache = "{SCHEMATRON_CACHE}"\n'
        f'validator_socket = "{validator_socket}"\n')  # `cda validate` finds it running
    assert main(["init", "--demo", "--config", str(home / "config.toml")]) == 0
    conn = connect(home / "var" / "gateway.db")
    import_directory(conn, shared_dir / "bdpm")
    conn.close()
    return home


@pytest.fixture(scope="session")
def demo_people(forms_home: Path):  # type: ignore[no-untyped-def]
    from gateway.config import load_config
    from gateway.directory import open_directory
    from gateway.documents.people import DirectoryPeople
    from gateway.identifiers import OID_INS_TEST

    return DirectoryPeople(open_directory(load_config(forms_home / "config.toml")),
                           OID_INS_TEST)


@pytest.fixture(scope="session")
def demo_drugs(forms_home: Path):  # type: ignore[no-untyped-def]
    from gateway.db import connect
    from gateway.drugs.store import DrugReference

    conn = connect(forms_home / "var" / "gateway.db")
    yield DrugReference(conn)
    conn.close()


@pytest.fixture(scope="session")
def _peer_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another operator's gateway home (domain peer.localhost) with its own CAs."""
    from gateway.cli import main

    home = tmp_path_factory.mktemp("peer") / "gw"
    home.mkdir()
    (home / "config.toml").write_text(
        '[gateway]\ndomain = "peer.localhost"\nhostname = "mx.peer.localhost"\n'
        '[pki]\norganisation = "Peer Operator"\nca_key_bits = 2048\n'
    )
    assert main(["init", "--config", str(home / "config.toml")]) == 0
    return home


@pytest.fixture
def peer_home(tmp_path: Path, _peer_template: Path) -> Path:
    """A second, independent gateway (another trust-space operator) for relay/PKI tests."""
    home = tmp_path / "peer"
    shutil.copytree(_peer_template, home, symlinks=True)
    return home


@pytest.fixture(scope="session")
def openid_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenIDProvider]:
    """A real OpenID provider (node-oidc-provider, tests/oidc_provider.py) over HTTPS on a
    loopback port, with the demo doctor and pharmacist as accounts. Skips when Node.js or the
    package is missing (fails under CI=true). Tests that change its keys put them back."""
    from oidc_provider import OpenIDProvider, demo_accounts, node_problem

    problem = node_problem()
    require(problem is None, problem or "")
    provider = OpenIDProvider(tmp_path_factory.mktemp("oidc"), demo_accounts()).start()
    try:
        yield provider
    finally:
        provider.stop()
