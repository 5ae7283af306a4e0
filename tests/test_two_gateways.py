"""Two gateways side by side on one PostgreSQL database: two `mssgw serve` processes (each its
own loopback ports, its own copy of the deployed files: config, CA and certificates, drug
reference), sharing nothing else. What a user of either sees is the same gateway:

- the journey across nodes: the doctor submits on A, the patient reads on B and forwards
  through B, the pharmacy dispenses on A, the doctor reads the report on B;
- the same prescription dispensed at once through A and through B is never over-dispensed;
- IMAP sessions on A and B see each other's flag changes and expunges, and IDLE on B wakes for
  a delivery made through A (LISTEN/NOTIFY);
- deliveries through A and B at once to one mailbox get unique, ascending UIDs;
- an account locked out on A is locked out on B;
- a message for another operator is relayed once with both queue runners up;
- SIGKILL of A during a load: every message A acknowledged is readable through B, B stays
  ready and takes new mail, and A, restarted, serves what arrived while it was down;
- an administrator account and API token made with A's `mssgw admin` work on B's API, and a
  revocation through B holds on A.
"""

from __future__ import annotations

import imaplib
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest

from gateway.config import Config, load_config
from tests.journey_helpers import (
    DOCTOR,
    PATIENT,
    PHARMACIST,
    PHARMACY,
    ROBOT,
    form_message,
    make_home,
    text_of,
)
from tests.smtp_helpers import (
    PASSWORD,
    PRACTICE,
    FakePeer,
    client_context,
    message,
    submission,
)
from tests.test_journey import FORM, dispense, forward

PEER_DN = "CN=mx.peer.localhost,O=Peer Operator,C=FR"
HOUSE = "dr.house@peer.localhost"
QID = re.compile(rb"queued as ([0-9A-F]{21})")
RECEIVED_ID = re.compile(rb"id ([0-9A-F]{21})")


@dataclass
class Node:
    """One `mssgw serve` and what its users do with it (the journey helpers' interface)."""

    name: str
    config: Config
    cfg: Path
    proc: subprocess.Popen[bytes] | None = None
    ports: dict[str, int] | None = None
    log: Path | None = None

    def start(self) -> Node:
        # The server's log goes to a file beside its configuration (read when a test fails).
        self.log = self.cfg.parent / f"serve-{time.monotonic_ns()}.log"
        with self.log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "serve", "--config", str(self.cfg)],
                stderr=out, start_new_session=True,
            )
        ports: dict[str, int] = {}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            text = self.log.read_bytes()
            for m in re.finditer(rb"listening: (.+?) on 127\.0\.0\.1:(\d+)", text):
                ports[m.group(1).decode()] = int(m.group(2))
            if b"worker process(es) ready" in text:
                self.proc, self.ports = proc, ports
                return self
            time.sleep(0.1)
        proc.kill()
        raise AssertionError(f"{self.name}: serve did not start: {self.log.read_bytes()[-3000:]!r}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    def port(self, name: str) -> int:
        assert self.ports is not None
        return self.ports[name]

    def send(self, login: str, msg: EmailMessage | bytes, to: list[str] | None = None) -> None:
        with submission(self.config, self.port("smtp submission"), login=login) as client:
            if isinstance(msg, bytes):
                client.sendmail(login, to or [], msg)
            else:
                client.send_message(msg)

    def imap(self, user: str | None = None, password: str = PASSWORD) -> imaplib.IMAP4_SSL:
        client = imaplib.IMAP4_SSL("127.0.0.1", self.port("imap tls"), timeout=20,
                                   ssl_context=client_context(self.config))
        if user is not None:
            client.login(user, password)
        return client

    def fetch_all(self, user: str) -> list[EmailMessage]:
        client = self.imap(user)
        try:
            client.select("INBOX")
            _, data = client.uid("SEARCH", "ALL")
            out: list[EmailMessage] = []
            for uid in data[0].split():
                _, got = client.uid("FETCH", uid, "(BODY.PEEK[])")
                raw = next(item[1] for item in got if isinstance(item, tuple))
                out.append(message_from_bytes(raw, policy=policy.default))  # type: ignore[arg-type]
            return out
        finally:
            client.logout()

    def wait_for(self, user: str, count: int, timeout: float = 30) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while True:
            got = self.fetch_all(user)
            if len(got) >= count or time.monotonic() > deadline:
                return got
            time.sleep(0.2)


@dataclass
class Across:
    """Writes through one node, reads through the other."""

    writer: Node
    reader: Node

    def send(self, login: str, msg: EmailMessage | bytes, to: list[str] | None = None) -> None:
        self.writer.send(login, msg, to)

    def fetch_all(self, user: str) -> list[EmailMessage]:
        return self.reader.fetch_all(user)

    def wait_for(self, user: str, count: int, timeout: float = 30) -> list[EmailMessage]:
        return self.reader.wait_for(user, count, timeout)


@dataclass
class Cluster:
    a: Node
    b: Node
    peer: FakePeer


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, _gateway_template: Path,
            _peer_template: Path, shared_dir: Path, postgres_server) -> Iterator[Cluster]:  # noqa: ANN001
    from gateway import pki
    from gateway.directory import open_directory
    from gateway.pki.files import Layout
    from gateway.pki.kinds import CA
    from gateway.pki.tls import server_context

    peer_config = load_config(_peer_template / "config.toml")
    peer = FakePeer(server_context(peer_config)).__enter__()
    dsn = postgres_server.dsn(postgres_server.create_database())
    root = tmp_path_factory.mktemp("two-gateways")
    a_home = make_home(
        _gateway_template, root / "a", shared_dir, dsn=dsn,
        smtp={"rate_limit_client": "0", "rate_limit_account": "0", "queue_lifetime": "600",
              "routes": f'{{ "peer.localhost" = "127.0.0.1:{peer.port}" }}'},
    )
    cfg = a_home / "config.toml"
    config = load_config(cfg)
    open_directory(config, actor="test").add_domain("peer.localhost", [PEER_DN])
    for ca in CA:  # the peer's chain, trusted by every node (deployed with the CA files)
        pki.add_anchor(config, Layout.of(peer_config).ca_cert(ca).read_bytes())
    # Node B: the same deployed files (the CA and the certificates issued so far, the
    # configuration, the drug reference); everything else is in the database.
    b_home = root / "b"
    shutil.copytree(a_home, b_home, symlinks=True)
    a = Node("A", config, cfg).start()
    b = Node("B", load_config(b_home / "config.toml"), b_home / "config.toml")
    try:
        b.start()
        yield Cluster(a, b, peer)
    finally:
        a.stop()
        b.stop()
        peer.__exit__(None, None, None)


def prescribe_on(node: Node, reader: Node) -> tuple[EmailMessage, str]:
    before = len(reader.fetch_all(PATIENT))
    node.send(DOCTOR, form_message(DOCTOR, PATIENT, FORM))
    msg = reader.wait_for(PATIENT, before + 1)[-1]
    return msg, str(msg["X-Ordonnance-Id"])


def test_the_journey_across_nodes(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    doctor_before = len(b.fetch_all(DOCTOR))
    msg, identifier = prescribe_on(a, b)  # the doctor on A, the patient reads on B
    assert re.fullmatch(r"[0-9A-Z]{18}", identifier)
    got = forward(Across(b, a), msg)  # the patient forwards through B, the pharmacy reads on A
    assert str(got["X-Ordonnance-Verification"]).strip().startswith(f"valid; id={identifier};")
    first = dispense(Across(a, b), identifier, "1 : délivré ; 1 boîte\n2 : délivré ; 1 boîte")
    assert "enregistrée" in str(first["Subject"]), text_of(first)
    assert "reste 1 boîte" in text_of(first)
    # The doctor, on B: the receipt of the prescription, then the dispensation report.
    mails = b.wait_for(DOCTOR, doctor_before + 2)[doctor_before:]
    assert [identifier in str(m["Subject"]) for m in mails] == [True, True]


def test_a_certificate_issued_on_a_signs_on_b(cluster: Cluster) -> None:
    """Issued certificates (and their keys) live in the database: B signs with one A issued."""
    import json

    from gateway.cli import main
    from gateway.signature.trust import check_package
    from tests.journey_helpers import attachment

    a, b = cluster.a, cluster.b
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "pki", "issue", DOCTOR, "--kind", "personal-sign",
         "--json", "--config", str(a.cfg)], check=True, capture_output=True, text=True)
    serial = json.loads(out.stdout)["serial"]
    assert not (b.config.certs_path / "issued" / f"{serial}.pem").exists()
    msg, _identifier = prescribe_on(b, b)  # signed in one of B's pool processes
    assert (b.config.certs_path / "private" / f"{serial}.key").exists()  # fetched by B
    assert (b.config.certs_path / "issued" / f"{serial}.pem").exists()
    verdict = check_package(b.config, attachment(msg, "IHE_XDM.zip"))
    assert verdict.valid, verdict.reason
    assert main(["pki", "show", serial, "--config", str(b.cfg)]) == 0


def test_concurrent_dispensation_on_both_nodes_is_never_over_dispensed(cluster: Cluster) -> None:
    from gateway.runtime import storage_for

    a, b = cluster.a, cluster.b
    _msg, identifier = prescribe_on(a, a)
    before = len(a.fetch_all(PHARMACIST))
    lines = "1 : délivré ; 2 boîtes\n2 : délivré ; 2 boîtes"  # everything, twice at once
    forms = [form_message(PHARMACIST, ROBOT, f"Ordonnance : {identifier}\n{lines}",
                          subject="Délivrance") for _ in (a, b)]  # two Message-IDs
    with ThreadPoolExecutor(2) as pool:
        for f in [pool.submit(node.send, PHARMACIST, form)
                  for node, form in zip((a, b), forms, strict=True)]:
            f.result()
    replies = a.wait_for(PHARMACIST, before + 2)[before:]
    subjects = sorted(str(r["Subject"]) for r in replies)
    assert len(subjects) == 2
    assert sum("enregistrée" in s for s in subjects) == 1, subjects
    assert sum("refusée" in s for s in subjects) == 1, subjects
    storage = storage_for(a.config)
    records = storage.records(storage.audit_log())
    try:
        record = records.registry.get(identifier, actor="test")
        assert len(record.dispensations) == 1
        assert all(line.delivered <= (line.quantity or 1) * (1 + line.renewals)
                   for line in record.lines)
    finally:
        records.close()


def _select(client: imaplib.IMAP4_SSL) -> None:
    typ, _ = client.select("INBOX")
    assert typ == "OK"


def test_imap_sessions_on_both_nodes_see_each_others_changes(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    a.send(DOCTOR, message(DOCTOR, PHARMACY, subject="Pour les deux"))
    on_a, on_b = a.imap(PHARMACY), b.imap(PHARMACY)
    try:
        _select(on_a)
        _select(on_b)
        _, data = on_a.uid("SEARCH", "ALL")
        uid = data[0].split()[-1].decode()
        assert on_a.uid("STORE", uid, "+FLAGS", r"(\Flagged)")[0] == "OK"
        deadline = time.monotonic() + 10
        seen = b""
        while rb"\Flagged" not in seen and time.monotonic() < deadline:
            on_b.noop()
            seen = b" ".join(x for x in on_b.untagged_responses.pop("FETCH", [])
                             if isinstance(x, bytes))
            time.sleep(0.1)
        assert rb"\Flagged" in seen, "B did not see A's flag change"
        assert on_b.uid("STORE", uid, "+FLAGS", r"(\Deleted)")[0] == "OK"
        assert on_b.expunge()[0] == "OK"
        deadline = time.monotonic() + 10
        gone = []
        while not gone and time.monotonic() < deadline:
            on_a.noop()
            gone = on_a.untagged_responses.pop("EXPUNGE", [])
            time.sleep(0.1)
        assert gone, "A did not see B's expunge"
    finally:
        for c in (on_a, on_b):
            c.logout()


def test_idle_on_b_wakes_for_a_delivery_through_a(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    sock = socket.create_connection(("127.0.0.1", b.port("imap tls")), timeout=15)
    tls = client_context(b.config).wrap_socket(sock, server_hostname="127.0.0.1")

    def line() -> bytes:
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = tls.recv(1)
            if not chunk:
                raise EOFError(data)
            data += chunk
        return data

    def until(tag: bytes) -> list[bytes]:
        out = []
        while True:
            out.append(line())
            if out[-1].startswith(tag):
                return out

    line()  # greeting
    tls.sendall(f"a LOGIN {PHARMACIST} \"{PASSWORD}\"\r\n".encode())
    until(b"a ")
    tls.sendall(b"b SELECT INBOX\r\n")
    exists = [int(m.group(1)) for x in until(b"b ") if (m := re.match(rb"\* (\d+) EXISTS", x))]
    tls.sendall(b"c IDLE\r\n")
    assert line().startswith(b"+")
    a.send(DOCTOR, message(DOCTOR, PHARMACIST, subject="Pendant IDLE"))
    tls.settimeout(15)
    woke = line()  # within IDLE's half-second poll of a notification heard from A's commit
    assert re.match(rb"\* (\d+) EXISTS", woke), woke
    assert int(woke.split()[1]) == exists[0] + 1
    tls.sendall(b"DONE\r\n")
    until(b"c ")
    tls.close()


def test_concurrent_deliveries_through_both_nodes_get_unique_ascending_uids(
    cluster: Cluster,
) -> None:
    a, b = cluster.a, cluster.b
    client = b.imap(PHARMACY)
    _select(client)
    _, data = client.uid("SEARCH", "ALL")
    before = [int(x) for x in data[0].split()]
    n = 15

    def burst(node: Node, tag: str) -> None:
        with submission(node.config, node.port("smtp submission"), login=DOCTOR) as smtp:
            for i in range(n):
                smtp.send_message(message(DOCTOR, PHARMACY, subject=f"{tag} {i}"))

    with ThreadPoolExecutor(4) as pool:
        for f in [pool.submit(burst, node, f"{node.name}{k}") for node in (a, b) for k in (1, 2)]:
            f.result()
    client.noop()
    _, data = client.uid("SEARCH", "ALL")
    uids = [int(x) for x in data[0].split()]
    new = uids[len(before):]
    assert len(new) == 4 * n and len(set(uids)) == len(uids) and uids == sorted(uids)
    assert min(new) > max(before, default=0)
    _, got = client.uid("FETCH", f"{new[0]}:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    subjects = {item[1].decode().strip() for item in got if isinstance(item, tuple)}
    assert len(subjects) == 4 * n  # every message, once
    client.logout()


def test_an_account_locked_on_a_is_locked_on_b(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    victim = PRACTICE  # a mailbox no other test here logs in with
    for _ in range(a.config.auth.account_max_failures):
        with pytest.raises(imaplib.IMAP4.error):
            a.imap(victim, password="wrong password, again")
    with pytest.raises(imaplib.IMAP4.error):
        b.imap(victim)  # the right password, through the other node: locked out
    with pytest.raises(smtplib.SMTPAuthenticationError), \
            submission(b.config, b.port("smtp submission"), login=victim):
        pass


def _mssgw(node: Node, *args: str, stdin: str = "") -> str:
    out = subprocess.run([sys.executable, "-m", "gateway", *args, "--config", str(node.cfg)],
                         input=stdin, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_an_administrator_made_on_a_works_on_b(cluster: Cluster) -> None:
    """The console's and the API's accounts and tokens are in the database: an account and a
    token created with A's `mssgw admin` work against B's API; revoked through B, refused by
    A at once."""
    import json

    from tests.http_helpers import client

    a, b = cluster.a, cluster.b
    _mssgw(a, "admin", "add", "ops", stdin="a long operator password\n")
    token = json.loads(_mssgw(a, "admin", "token", "create", "--admin", "ops", "--label",
                              "monitoring", "--scope", "*:read", "--json"))
    auth = {"Authorization": f"Bearer {token['token']}"}
    with client(b.config, b.port("https"), headers=auth) as on_b, \
            client(a.config, a.port("https"), headers=auth) as on_a:
        assert on_b.get("/api/v1/status").status_code == 200
        _mssgw(b, "admin", "token", "revoke", token["id"])
        assert on_a.get("/api/v1/status").status_code == 401
    listed = json.loads(_mssgw(b, "admin", "list", "--json"))
    assert "ops" in [x["name"] for x in listed]


def test_outbound_message_is_relayed_once_with_both_nodes_up(cluster: Cluster) -> None:
    a = cluster.a
    peer = cluster.peer
    before = len(peer.received)
    a.send(DOCTOR, message(DOCTOR, HOUSE, subject="To another operator"))
    deadline = time.monotonic() + 30
    while len(peer.received) == before and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(3)  # both runners scan every second: a second copy would have come by now
    got = [r for r in peer.received[before:] if b"To another operator" in r[2]]
    assert len(got) == 1, f"relayed {len(got)} times"
    from gateway.runtime import storage_for

    assert storage_for(a.config).outbound_queue().ids() == []


def test_sigkill_of_a_during_a_load_loses_nothing_acknowledged(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    acked: list[bytes] = []
    lock = threading.Lock()
    stop = threading.Event()
    data = message(DOCTOR, PHARMACIST, body="x" * 2000).as_bytes(policy=SMTP)

    def load() -> None:
        while not stop.is_set():
            try:
                with smtplib.SMTP("127.0.0.1", a.port("smtp submission"), timeout=10) as c:
                    c.starttls(context=client_context(a.config))
                    c.login(DOCTOR, PASSWORD)
                    while not stop.is_set():
                        c.mail(DOCTOR)
                        c.rcpt(PHARMACIST)
                        code, reply = c.data(data)
                        m = QID.search(reply)
                        if code == 250 and m:
                            with lock:
                                acked.append(m.group(1))
            except (OSError, smtplib.SMTPException):
                time.sleep(0.05)

    threads = [threading.Thread(target=load) for _ in range(6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(acked) < 60 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert a.proc is not None
    os.killpg(a.proc.pid, signal.SIGKILL)  # supervisor and workers, mid-flight
    a.proc.wait(10)
    a.proc = None
    stop.set()
    for t in threads:
        t.join(20)
    assert len(acked) >= 60, "the load did not get going"
    client = b.imap(PHARMACIST)
    _select(client)
    _, got = client.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (RECEIVED)])")
    client.logout()
    readable = {m.group(1) for item in got if isinstance(item, tuple)
                for m in RECEIVED_ID.finditer(item[1])}
    missing = set(acked) - readable
    assert not missing, f"{len(missing)} acknowledged message(s) not readable through B"
    # What the operator checks next: B is ready (the load balancer keeps sending to it) and
    # takes new mail on its own; A, back, serves what arrived while it was down.
    from tests.http_helpers import client as https_client

    with https_client(b.config, b.port("https")) as http:
        assert http.get("/readyz").status_code == 200
    b.send(DOCTOR, message(DOCTOR, PHARMACIST, subject="While A is down"))
    a.start()  # A comes back (for the tests after this one too)
    subjects = [str(m["Subject"]) for m in a.wait_for(PHARMACIST, len(readable) + 1)]
    assert "While A is down" in subjects
    assert len(subjects) == len(b.fetch_all(PHARMACIST))  # one mailbox, whichever node
