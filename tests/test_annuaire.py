"""The national directory's list of MSSanté mailboxes (synthetic files in its exact layout, never
real people's data): how lines become remote entries, the lines refused, and
`mssgw directory add-remote|list-remote|show-remote|remove-remote|import-remote` end to end."""

from __future__ import annotations

import io
import zipfile

import pytest
from directory_cli import Cli

from gateway import audit
from gateway.config import load_config
from gateway.directory.annuaire import COLUMNS, AnnuaireError, read_annuaire
from gateway.directory.model import RemoteKind
from tests.annuaire_helpers import annuaire, luhn_complete, org, per

PEER = "peer.localhost"
PEER_DN = "CN=mx.peer.localhost,O=Peer Operator,C=FR"
RPPS_A = luhn_complete("1000000010")
RPPS_B = luhn_complete("1000000020")
FINESS_A = luhn_complete("29000001")
FINESS_B = luhn_complete("29000002")


def sample() -> bytes:
    return annuaire(
        per(f"jean.dupont@{PEER}", RPPS_A, "DUPONT", "Jean", structure="Cabinet du Port"),
        per(f"anne.le-gall@{PEER}", RPPS_B, "LE GALL", "Anne", profession="21", specialty="",
            title="MME"),
        org(f"contact@pharmacie-du-port.{PEER}", FINESS_A, "SELARL PHARMACIE DU PORT"),
        org(f"secretariat@{PEER}", FINESS_B, "CENTRE HOSPITALIER", service="Cardiologie"),
        org(f"officine@{PEER}", FINESS_B, "", enseigne="Grande Officine de la Gare"),
        per(f"jean.dupont@{PEER}", RPPS_A, "DUPONT", "Jean"),  # the same address again
        per(f"faux@{PEER}", "10000000101", "FAUX", "Luhn"),  # wrong check digit
        ["PER", f"court@{PEER}", "8"],  # a line cut short
        per("pas une adresse", RPPS_A, "X", "Y"),
        ["APPX", f"robot@{PEER}"] + [""] * (len(COLUMNS) - 2),
    )


def test_lines_become_remote_entries():
    got = read_annuaire(sample())
    by = {e.address: e for e in got.entries}
    assert got.lines == 10 and got.duplicates == 1 and got.skipped == 4
    doctor = by[f"jean.dupont@{PEER}"]
    assert doctor.kind is RemoteKind.PROFESSIONAL and doctor.name == "Dr Jean DUPONT"
    assert (doctor.rpps, doctor.profession, doctor.specialty) == (RPPS_A, "10", "SM26")
    assert doctor.organisation == "Cabinet du Port" and not doctor.takes_prescriptions
    pharmacist = by[f"anne.le-gall@{PEER}"]
    assert pharmacist.name == "Mme Anne LE GALL" and pharmacist.takes_prescriptions
    pharmacy = by[f"contact@pharmacie-du-port.{PEER}"]
    assert pharmacy.kind is RemoteKind.PHARMACY and pharmacy.finess == FINESS_A
    assert by[f"officine@{PEER}"].kind is RemoteKind.PHARMACY  # named by its enseigne
    hospital = by[f"secretariat@{PEER}"]
    assert hospital.kind is RemoteKind.STRUCTURE and hospital.name == "CENTRE HOSPITALIER"
    reasons = {p.line: p.reason for p in got.problems}
    assert "Luhn" in reasons[8] and "3 columns" in reasons[9] and "email" in reasons[10]
    assert "not PER, ORG" in reasons[11]


def test_structure_identifiers_with_their_type_prefix():
    siret = "73282932000074"
    got = read_annuaire(annuaire(org(f"a@{PEER}", "1" + FINESS_A, "PHARMACIE A"),
                                 ["ORG", f"b@{PEER}", "", "", "", "3", "3" + siret]
                                 + [""] * 11 + ["CLINIQUE B"] + [""] * 12))
    by = {e.address: e for e in got.entries}
    assert by[f"a@{PEER}"].finess == FINESS_A and by[f"b@{PEER}"].siret == siret


def test_the_published_zip_is_read_as_its_text():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("Extraction_Correspondance_MSSante_202611220400.txt", sample())
    assert read_annuaire(buffer.getvalue()) == read_annuaire(b"\xef\xbb\xbf" + sample())


@pytest.mark.parametrize("data, words", [
    (b"", "empty"),
    (annuaire(header=COLUMNS[:30]), "30 columns"),
    (annuaire(header=("Type de BAL", "Adresse mail", *COLUMNS[2:])), "column 2"),
    ("Type de BAL|é".encode("latin-1"), "not UTF-8"),
    (b"PK\x03\x04 broken", "not a readable ZIP"),
])
def test_a_file_that_is_not_the_national_list_is_refused(data, words):
    with pytest.raises(AnnuaireError, match=words):
        read_annuaire(data)


@pytest.fixture
def cli(gateway_home, capsys):
    cli = Cli(gateway_home, capsys)
    cli.ok("trust", "add-domain", PEER, "--dn", PEER_DN)
    return cli


def test_add_show_list_remove_by_hand(cli):
    address = f"pharmacie.du.port@{PEER}"
    assert cli.ok("directory", "add-remote", "--email", address, "--kind", "pharmacy",
                  "--name", "Pharmacie du Port", "--finess", FINESS_A).out == address + "\n"
    shown = cli.ok("directory", "show-remote", address).out
    assert "kind:          pharmacy" in shown and "may send it prescriptions" in shown
    assert cli.ok("directory", "show-remote", address, "--json").json()["finess"] == FINESS_A
    listed = cli.ok("directory", "list-remote").out
    assert address in listed and f"FINESS {FINESS_A}" in listed and "[manual]" in listed
    cli.fails("directory", "add-remote", "--email", address, "--kind", "pharmacy", "--name",
              "Autre", "--finess", FINESS_A, match="already registered")
    cli.fails("directory", "add-remote", "--email", "x@test.localhost", "--kind", "pharmacy",
              "--name", "X", "--finess", FINESS_A, match="one of our own domains")
    cli.fails("directory", "add-remote", "--email", "dr@ailleurs.example", "--kind",
              "professional", "--name", "Dr X", "--rpps", RPPS_A,
              match="not a trust-space domain")
    cli.fails("directory", "add-remote", "--email", f"dr@{PEER}", "--kind", "professional",
              "--name", "Dr X", "--rpps", "10000000101", match="Luhn")
    cli.fails("directory", "add-remote", "--email", f"dr@{PEER}", "--kind", "professional",
              "--name", "Dr X", match="needs an RPPS")
    cli.fails("directory", "show-remote", f"nobody@{PEER}", match="no mailbox")
    assert cli.ok("directory", "remove-remote", address).out == f"removed {address}\n"
    cli.fails("directory", "remove-remote", address, match="no mailbox")
    actions = [e.action for e in audit.read(load_config(cli.config))]
    assert "directory.add-remote" in actions and "directory.remove-remote" in actions


def test_import_the_national_list(cli, tmp_path):
    path = tmp_path / "Extraction_Correspondance_MSSante_202611220400.txt"
    path.write_bytes(sample())
    out = cli.ok("directory", "import-remote", str(path)).out
    assert "10 lines, 5 addresses (1 lines repeat an address, 4 skipped)" in out
    assert "skipped line 8:" in out and "added 5, updated 0, removed 0" in out
    assert len(cli.ok("directory", "list-remote", "--json").json()) == 5
    pharmacies = cli.ok("directory", "list-remote", "--kind", "pharmacy", "--json").json()
    assert sorted(e["address"] for e in pharmacies) == [
        f"contact@pharmacie-du-port.{PEER}", f"officine@{PEER}"]
    # The next day's list: one pharmacy closed, imported again from the published ZIP.
    path.write_bytes(annuaire(
        per(f"jean.dupont@{PEER}", RPPS_A, "DUPONT", "Jean", structure="Cabinet du Port"),
        per(f"anne.le-gall@{PEER}", RPPS_B, "LE GALL", "Anne", profession="21", specialty="",
            title="MME"),
        org(f"contact@pharmacie-du-port.{PEER}", FINESS_A, "SELARL PHARMACIE DU PORT"),
        org(f"secretariat@{PEER}", FINESS_B, "CENTRE HOSPITALIER", service="Cardiologie")))
    cli.fails("directory", "import-remote", str(path), match="would remove 1 of the 5")
    got = cli.ok("directory", "import-remote", str(path), "--allow-removals", "--json").json()
    assert (got["removed"], got["unchanged"], got["added"]) == (1, 4, 0)
    cli.fails("directory", "import-remote", str(tmp_path / "missing.txt"), match="cannot read")
    path.write_bytes(b"nom|adresse\n")
    cli.fails("directory", "import-remote", str(path), match="not the national list's header")
