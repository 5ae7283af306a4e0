"""Trust-space domains: whitelist import/re-import, hostile XML, peer DNs, `mssgw trust ...`."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from directory_cli import Cli

from gateway import audit
from gateway.config import load_config
from gateway.directory import open_directory
from gateway.directory.whitelist import InvalidWhitelist, parse_whitelist
from gateway.pki.dn import dn_matches

D = "test.localhost"
NS = "https://listeblanche.mssante.fr/schema"


@pytest.fixture
def cli(gateway_home, capsys):
    return Cli(gateway_home, capsys)


@pytest.fixture
def whitelist(shared_dir):
    path = shared_dir / "mssante" / "listeblanchemssante.xml"
    assert path.is_file(), path
    return path


def domaine(name, dn, date="2025-03-01T00:00:00Z", description="Test"):
    return (
        f"<Domaine><Nom>{name}</Nom><Description>{description}</Description>"
        f"<DNCertificatOperateur>{dn}</DNCertificatOperateur>"
        "<ResponsableContact>01 02 03 04 05, r@example.fr</ResponsableContact>"
        "<SupportContact>01 02 03 04 05, s@example.fr</SupportContact>"
        f"<DateMAJ>{date}</DateMAJ></Domaine>"
    )


def document(domains, generated="2025-04-01T00:00:00Z"):
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><ListeBlancheMSSante xmlns="{NS}">'
        f"<DateDeGeneration>{generated}</DateDeGeneration><ListeDomaines>"
        + "".join(domains)
        + "</ListeDomaines></ListeBlancheMSSante>"
    )


def test_parse_real_snapshot(whitelist):
    wl = parse_whitelist(whitelist.read_bytes())
    assert wl.entries == 619
    assert len(wl.domains) == 516  # a domain is listed once per operator certificate
    assert wl.generated == "2025-03-13T14:54:10Z"
    d = wl.domains["15-20.mssante.fr"]
    assert len(d.operator_dns) == 5
    assert d.operator_dns[0].startswith("CN=smtp-1.sesan.santnet.com")  # most recent first
    assert "uc-cmp.mssante.fr" in wl.domains  # names are lower-cased
    # the snapshot lacks its closing root tag: tolerated, with a warning
    assert any("ends without </ListeBlancheMSSante>" in w for w in wl.warnings)


def test_import_real_snapshot(cli, whitelist, gateway_home):
    r = cli.ok("trust", "import-whitelist", str(whitelist))
    assert "619 entries, 516 domains" in r.out
    assert "added 516, removed 0, changed 0" in r.out
    peers = cli.ok("trust", "list", "--peers", "--json").json()
    assert len(peers) == 516
    assert "(518 domains; national whitelist generated 2025-03-13T14:54:10Z)" in cli.ok(
        "trust", "list").out
    shown = cli.ok("trust", "show", "aphp.mssante.fr", "--json").json()
    assert shown["source"] == "whitelist" and len(shown["operator_dns"]) == 2
    # the same list again: nothing changes
    again = cli.ok("trust", "import-whitelist", str(whitelist), "--json").json()
    assert (again["added"], again["removed"], again["changed"]) == ([], [], [])
    directory = open_directory(load_config(gateway_home / "config.toml"))
    assert directory.is_trusted_domain("aphp.mssante.fr")
    assert directory.is_trusted_domain("APHP.mssante.fr.")
    assert not directory.is_trusted_domain("evil.example.com")
    assert directory.is_trusted_domain(D) and directory.is_own_domain(f"patient.{D}")
    dn = "CN=smtp-1.sante.santnet.com,OU=341459958900028,O=DEDALUS HEALTHCARE FRANCE," \
         "ST=Gironde (33),C=FR"
    assert dn in directory.expected_operator_dns("aphp.mssante.fr")
    assert directory.peer_certificate_matches("aphp.mssante.fr", dn)
    assert not directory.peer_certificate_matches("aphp.mssante.fr", "CN=evil,C=FR")
    assert not directory.peer_certificate_matches("unknown.example", dn)
    assert directory.expected_operator_dn(D) is None


def test_reimport_reports_difference(cli, whitelist, tmp_path, gateway_home):
    cli.ok("trust", "import-whitelist", str(whitelist))
    text = whitelist.read_text(encoding="utf-8")
    # newer list: one domain removed, one added, one operator DN changed (every entry of it)
    text = text.replace("<DateDeGeneration>2025-03-13T14:54:10Z",
                        "<DateDeGeneration>2025-04-01T00:00:00Z")
    start = text.index("<Domaine>\n            <Nom>ae.mssante.fr</Nom>")
    end = text.index("</Domaine>", start) + len("</Domaine>")
    text = text[:start] + text[end:]
    text = text.replace("<Nom>la-cadene.mssante.fr</Nom>", "<Nom>la-cadene.mssante.fr</Nom>", 1)
    new_dn = "CN=mss.nouvel-operateur.fr,OU=12345678900011,O=NOUVEL OPERATEUR,C=FR"
    start = text.index("<Nom>psypro-reims.mssante.fr</Nom>")
    dn_start = text.index("<DNCertificatOperateur>", start) + len("<DNCertificatOperateur>")
    dn_end = text.index("</DNCertificatOperateur>", dn_start)
    text = text[:dn_start] + new_dn + text[dn_end:]
    text = text.replace("    </ListeDomaines>", domaine("nouveau.mssante.fr", new_dn)
                        + "\n    </ListeDomaines>")
    newer = tmp_path / "newer.xml"
    newer.write_text(text, encoding="utf-8")
    r = cli.ok("trust", "import-whitelist", str(newer))
    assert "added 1, removed 1, changed 1" in r.out
    assert "+ nouveau.mssante.fr" in r.out
    assert "- ae.mssante.fr" in r.out
    assert "~ psypro-reims.mssante.fr" in r.out
    assert cli("trust", "show", "ae.mssante.fr").code == 1
    assert cli.ok("trust", "show", "psypro-reims.mssante.fr", "--json").json()[
        "operator_dns"] == [new_dn]
    config = load_config(gateway_home / "config.toml")
    last = list(audit.read(config, action="trust.import-whitelist"))[-1]
    assert last.details["removed"] == ["ae.mssante.fr"]
    assert last.details["changed"] == ["psypro-reims.mssante.fr"]
    # the older list is now refused unless asked for
    cli.fails("trust", "import-whitelist", str(whitelist),
              match="older than the list already imported (2025-04-01T00:00:00Z)")
    back = cli.ok("trust", "import-whitelist", str(whitelist), "--allow-older", "--json").json()
    assert back["added"] == ["ae.mssante.fr"] and back["removed"] == ["nouveau.mssante.fr"]


def test_import_keeps_own_and_manual_domains(cli, tmp_path):
    cli.ok("trust", "add-domain", "peer.example.fr", "--dn", "CN=mx.peer.example.fr,O=Peer,C=FR")
    small = tmp_path / "small.xml"
    small.write_text(document([domaine("a.mssante.fr", "CN=a,O=A,C=FR"),
                               domaine(D, "CN=intruder,O=X,C=FR")]))
    r = cli.ok("trust", "import-whitelist", str(small))
    assert f"warning: {D} is one of our own domains" in r.out
    names = {d["name"]: d for d in cli.ok("trust", "list", "--json").json()}
    assert set(names) == {D, f"patient.{D}", "peer.example.fr", "a.mssante.fr"}
    assert names[D]["ours"] and names[D]["operator_dns"] == []
    small.write_text(document([], generated="2025-05-01T00:00:00Z"))
    cli.fails("trust", "import-whitelist", str(small), match="would remove 1 of the 1 peer")
    r = cli.ok("trust", "import-whitelist", str(small), "--allow-removals", "--json").json()
    assert r["removed"] == ["a.mssante.fr"]
    assert "peer.example.fr" in {d["name"] for d in cli.ok("trust", "list", "--json").json()}


BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
    f'<ListeBlancheMSSante xmlns="{NS}"><ListeDomaines><Domaine><Nom>&lol3;</Nom>'
    "</Domaine></ListeDomaines></ListeBlancheMSSante>"
)
XXE = (
    '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    f'<ListeBlancheMSSante xmlns="{NS}"><ListeDomaines>'
    + domaine("&xxe;", "CN=a,C=FR").replace("<Nom>&amp;xxe;", "<Nom>&xxe;")
    + "</ListeDomaines></ListeBlancheMSSante>"
)


@pytest.mark.parametrize(
    "content,message",
    [
        (BILLION_LAUGHS, "a DOCTYPE/DTD is not allowed"),
        (XXE, "a DOCTYPE/DTD is not allowed"),
        ('<?xml version="1.0"?><!DOCTYPE x SYSTEM "http://127.0.0.1:9/x.dtd">'
         f'<ListeBlancheMSSante xmlns="{NS}"><ListeDomaines/></ListeBlancheMSSante>',
         "a DOCTYPE/DTD is not allowed"),
        (f'<ListeBlancheMSSante xmlns="{NS}"><ListeDomaines><Domaine><Nom>&ent;</Nom>'
         "</Domaine></ListeDomaines></ListeBlancheMSSante>", "Entity 'ent' not defined"),
        ("", "not well-formed XML: Document is empty"),
        ("<a><b></a>", "not well-formed XML"),
        ("<ListeBlancheMSSante><ListeDomaines/></ListeBlancheMSSante>",
         "not ListeBlancheMSSante in namespace"),
        (f'<ListeBlancheMSSante xmlns="{NS}"></ListeBlancheMSSante>', "no ListeDomaines"),
        (document([domaine("a.mssante.fr", "CN=a,C=FR")])[:-60],
         "the file is truncated before the end of the domain list"),
    ],
)
def test_hostile_or_broken_whitelist_refused(cli, tmp_path, content, message):
    cli.ok("trust", "import-whitelist", str(_write(tmp_path, document(
        [domaine("keep.mssante.fr", "CN=k,C=FR")], generated="2020-01-01T00:00:00Z"))))
    path = _write(tmp_path, content, "bad.xml")
    r = cli.fails("trust", "import-whitelist", str(path), match=message)
    assert r.err.startswith("mssgw: error: bad.xml: ")
    with pytest.raises(InvalidWhitelist):
        parse_whitelist(content.encode())


def _write(tmp_path, content, name="list.xml"):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return path


def test_import_missing_file(cli, tmp_path):
    cli.fails("trust", "import-whitelist", str(tmp_path / "nope.xml"),
              match="whitelist: cannot read")


def test_entries_without_dn_or_with_bad_names_are_skipped_with_warning(cli, tmp_path):
    path = _write(tmp_path, document([
        domaine("ok.mssante.fr", "CN=ok,C=FR"),
        domaine("bad name!", "CN=x,C=FR"),
        domaine("nodn.mssante.fr", ""),
    ]))
    r = cli.ok("trust", "import-whitelist", str(path))
    assert "added 1," in r.out
    assert "entry skipped: Nom: 'bad name!'" in r.out
    assert "nodn.mssante.fr has no DNCertificatOperateur" in r.out


def test_add_show_remove_domain(cli):
    dn = "CN=mx.peer.fr,O=Peer SA,C=FR"
    assert "added peer domain peer.fr" in cli.ok("trust", "add-domain", "Peer.FR", "--dn", dn).out
    shown = cli.ok("trust", "show", "peer.fr").out
    assert f"operator DN:  {dn}" in shown
    cli.fails("trust", "add-domain", "peer.fr", "--dn", dn, match="'peer.fr' is already listed")
    cli.fails("trust", "add-domain", "other.fr", match="a peer domain needs the subject DN")
    cli.fails("trust", "add-domain", "other.fr", "--dn", "not a dn",
              match="dn: 'not a dn' is invalid: not an RFC 4514 distinguished name")
    cli.fails("trust", "add-domain", "bad_domain", "--dn", dn, match="domain: 'bad_domain'")
    assert [d["name"] for d in cli.ok("trust", "list", "--search", "peer", "--json").json()] \
        == ["peer.fr"]
    cli.ok("trust", "remove-domain", "peer.fr")
    cli.fails("trust", "remove-domain", "peer.fr", match="'peer.fr' is not a trust-space domain")
    cli.fails("trust", "show", "peer.fr", match="'peer.fr' is not a trust-space domain")


def test_own_domain_hosting_mailboxes_cannot_be_removed(cli):
    cli.ok("trust", "add-domain", "clinique.fr", "--own")
    cli.ok("directory", "add-application", "--email", "robot@clinique.fr", "--name", "R")
    cli.fails("trust", "remove-domain", "clinique.fr", match="still holds 1 mailbox(es)")


def test_dn_matching():
    listed = "CN=smtp-1.sante.santnet.com,OU=341459958900028,O=DEDALUS HEALTHCARE FRANCE," \
             "ST=Gironde (33),C=FR"
    name = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
        x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Gironde (33)"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "DEDALUS HEALTHCARE FRANCE"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "341459958900028"),
        x509.NameAttribute(NameOID.COMMON_NAME, "smtp-1.sante.santnet.com"),
    ])
    assert dn_matches(listed, name)
    assert dn_matches(listed, listed.replace(",", ", ").lower())
    assert dn_matches(listed, "/C=FR/ST=Gironde (33)/O=DEDALUS HEALTHCARE FRANCE"
                              "/OU=341459958900028/CN=smtp-1.sante.santnet.com")
    assert not dn_matches(listed, listed.replace("smtp-1", "smtp-9"))
    assert not dn_matches(listed, "CN=smtp-1.sante.santnet.com,C=FR")


def test_parser_fuzz_only_refuses_cleanly(whitelist):
    """Random cuts and byte flips of the real list: parsed, or refused with InvalidWhitelist."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    data = whitelist.read_bytes()[:6000]

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(cut=st.integers(0, len(data)), pos=st.integers(0, len(data) - 1),
           byte=st.integers(0, 255))
    def check(cut, pos, byte):
        mutated = bytearray(data)
        mutated[pos] = byte
        for sample in (data[:cut], bytes(mutated)):
            try:
                parse_whitelist(sample)
            except InvalidWhitelist as exc:
                assert "\n" not in str(exc)

    check()


# -- completeness is decided from the bytes: cuts at every kind of position ----------------------

PRETTY_NS = f'<?xml version="1.0" encoding="UTF-8"?><ListeBlancheMSSante xmlns="{NS}">\n'


def pretty_document(names, generated="2025-04-01T00:00:00Z"):
    """A small list laid out as the real one is (indented, one element per line, and the same
    missing closing root tag is added back)."""
    entries = "".join(
        f"        <Domaine>\n            <Nom>{n}</Nom>\n"
        f"            <Description>Établissement {i}</Description>\n"
        f"            <DNCertificatOperateur>CN=mx.{n},OU=1234567890000{i},O=Op {i},C=FR"
        "</DNCertificatOperateur>\n"
        f"            <DateMAJ>2025-01-0{i + 1}T00:00:00Z</DateMAJ>\n        </Domaine>\n"
        for i, n in enumerate(names)
    )
    return (
        PRETTY_NS + f"    <DateDeGeneration>{generated}</DateDeGeneration>\n"
        "    <ListeDomaines>\n" + entries + "    </ListeDomaines>\n</ListeBlancheMSSante>\n"
    ).encode()


def position_kinds(data: bytes) -> list[str]:
    """What a cut just before each byte would fall into: a declaration, a tag name, an attribute,
    a text, or the white space between elements."""
    kinds: list[str] = []
    state = "between"
    i = 0
    while i < len(data):
        c = data[i : i + 1]
        if state in ("between", "text") and c == b"<":
            state = "declaration" if data[i + 1 : i + 2] == b"?" else "tag name"
        elif state == "tag name" and c in (b" ", b">"):
            state = "attribute" if c == b" " else "between"
        elif state in ("attribute", "declaration") and c == b">":
            state = "between"
        elif state == "between" and not c.isspace():
            state = "text"
        kinds.append(state)
        i += 1
    kinds.append("end")
    return kinds


def test_every_cut_of_a_small_list_is_refused_until_its_domain_list_is_closed():
    names = ["a.mssante.fr", "b.mssante.fr", "c.mssante.fr"]
    data = pretty_document(names)
    list_end = data.index(b"</ListeDomaines>") + len(b"</ListeDomaines>")
    root_start = data.index(b">", data.index(b"<ListeBlancheMSSante")) + 1
    kinds = position_kinds(data)
    seen: set[str] = set()
    for cut in range(len(data) + 1):
        sample = data[:cut]
        if cut < list_end:
            with pytest.raises(InvalidWhitelist) as refused:
                parse_whitelist(sample, "cut.xml")
            if cut >= root_start:
                assert "truncated before the end of the domain list" in str(refused.value), cut
            seen.add(kinds[cut])
            continue
        wl = parse_whitelist(sample, "cut.xml")
        assert sorted(wl.domains) == names, cut
        complete = cut >= data.index(b"</ListeBlancheMSSante>") + len("</ListeBlancheMSSante>")
        assert any("ends without </ListeBlancheMSSante>" in w for w in wl.warnings) != complete
    assert seen == {"declaration", "tag name", "attribute", "text", "between"}


def test_sampled_cuts_of_the_real_list_are_refused(whitelist):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    data = whitelist.read_bytes().replace(b"2025-03-13T14:54:10Z", b"2025-04-01T00:00:00Z", 1)
    list_end = data.rindex(b"</ListeDomaines>")
    root_start = data.index(b">", data.index(b"<ListeBlancheMSSante")) + 1

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(cut=st.integers(root_start, list_end + len("</ListeDomaines") - 1))
    def check(cut):
        with pytest.raises(InvalidWhitelist, match="truncated before the end of the domain list"):
            parse_whitelist(data[:cut])

    check()
    # and the real snapshot's own defect, with or without its trailing white space
    for end in (list_end + len("</ListeDomaines>"), len(data)):
        assert len(parse_whitelist(data[:end]).domains) == 516


def test_list_cut_inside_a_text_is_refused_and_changes_nothing(cli, whitelist, tmp_path):
    """The issue's case: the first 170,850 bytes with a newer DateDeGeneration (cut inside a
    <Nom>) used to be imported, removing 258 domains and changing an operator DN."""
    cli.ok("trust", "import-whitelist", str(whitelist))
    data = whitelist.read_bytes().replace(b"2025-03-13T14:54:10Z", b"2025-04-01T00:00:00Z", 1)
    cut = tmp_path / "cut.xml"
    cut.write_bytes(data[:170850])
    r = cli.fails("trust", "import-whitelist", str(cut), "--allow-removals",
                  match="cut.xml: the file is truncated before the end of the domain list")
    assert "complete" not in r.err
    assert cli.ok("trust", "list", "--json", "--peers").json().__len__() == 516
    assert "2025-03-13T14:54:10Z" in cli.ok("trust", "list").out


def test_list_closed_inside_a_comment_is_not_complete():
    data = pretty_document(["a.mssante.fr", "b.mssante.fr"])
    second = data.index(b"        <Domaine>", data.index(b"</Domaine>"))
    hidden = data[:second] + b"<!-- </ListeDomaines> -->\n" + data[second:]
    for cut in (second + len(b"<!-- </ListeDomaines>"), second + len(b"<!-- </ListeDomaines> -->")):
        with pytest.raises(InvalidWhitelist):
            parse_whitelist(hidden[:cut])


def peer_list(count, generated):
    return document([domaine(f"p{i:02d}.mssante.fr", f"CN=mx{i},O=Op,C=FR")
                     for i in range(count)], generated=generated)


def test_reimport_removing_too_many_peers_is_refused(cli, tmp_path, gateway_home):
    cli.ok("trust", "import-whitelist", str(_write(tmp_path, peer_list(20, "2025-01-01"))))
    # 2 of 20 removed (10%): within the default share
    r = cli.ok("trust", "import-whitelist", str(_write(tmp_path, peer_list(18, "2025-02-01"))))
    assert "added 0, removed 2, changed 0" in r.out
    # 3 of 18 (17%): refused, nothing changes
    fewer = _write(tmp_path, peer_list(15, "2025-03-01"), "fewer.xml")
    cli.fails("trust", "import-whitelist", str(fewer),
              match="fewer.xml: would remove 3 of the 18 peer domains imported from the"
                    " whitelist (17%), more than the 10% allowed ([trust] max_removed_share):"
                    " refused (check the file; use --allow-removals to import it anyway)")
    assert cli.ok("trust", "list").out.endswith("national whitelist generated 2025-02-01)\n")
    # the operator who checked the file says so
    r = cli.ok("trust", "import-whitelist", str(fewer), "--allow-removals", "--json").json()
    assert r["removed"] == ["p15.mssante.fr", "p16.mssante.fr", "p17.mssante.fr"]
    # the share is configurable
    config = gateway_home / "config.toml"
    config.write_text(config.read_text() + "\n[trust]\nmax_removed_share = 0.5\n")
    r = cli.ok("trust", "import-whitelist", str(_write(tmp_path, peer_list(8, "2025-04-01"))))
    assert "removed 7" in r.out
    config.write_text(config.read_text().replace("0.5", "1.5"))
    cli.fails("trust", "list", match="[trust] max_removed_share must be between 0 and 1")


def test_is_trust_space_operator(cli, whitelist, gateway_home):
    cli.ok("trust", "import-whitelist", str(whitelist))
    directory = open_directory(load_config(gateway_home / "config.toml"))
    dedalus = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
        x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Gironde (33)"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "DEDALUS HEALTHCARE FRANCE"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "341459958900028"),
        x509.NameAttribute(NameOID.COMMON_NAME, "smtp-2.sante.santnet.com"),
    ])
    assert directory.is_trust_space_operator(dedalus)
    assert directory.is_trust_space_operator(
        "CN=mss.enovacom.fr, OU=344368557300034, O=ENOVACOM, ST=Bouches-du-Rhône (13), C=FR")
    assert not directory.is_trust_space_operator("CN=mx.evil.example,O=Evil,C=FR")
    assert not directory.is_trust_space_operator("garbage")
