"""Two operators: what the prescription journey across the trust space costs, per message.

Two temporary gateways (`mssgw init --demo`, each with its own CA and domain, each trusting the
other's CA as an anchor; drug reference from ../shared/bdpm) run the flows' worker functions in
this process, so the figures are the flows' CPU per message, without the transport (that is
bench_smtp's and bench_journey's):
- prescribing to a patient elsewhere (the identity traits in the form) beside one of ours;
- verifying a forward, arrived through the relay, of a prescription the other operator
  registered: the first one (the signer's chain, the document's checks, `record_external`)
  and a later one (the registry's record), beside a forward of one of ours;
- dispensing it (the eDISP built and signed; the report to the prescriber elsewhere);
- recording the signed report of a pharmacy elsewhere about a prescription of ours
  (`reported.record`).
Bounded: about 20 s after set-up (two CAs: seconds).
"""

from __future__ import annotations

import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import make_msgid
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.cli import main as cli  # noqa: E402
from gateway.config import Config, load_config  # noqa: E402

N = int(os.environ.get("BENCH_N", "15"))
OURS, PEER = "bench.localhost", "peer.localhost"
DOCTOR, PHARMACIST = f"dr.martin@{OURS}", f"ph.durand@{OURS}"
PHARMACY, ROBOT = f"pharmacie.centrale@{OURS}", f"ordonnances@{OURS}"
PEER_DOCTOR, PEER_PHARMACIST = f"dr.martin@{PEER}", f"ph.durand@{PEER}"
PEER_ROBOT = f"ordonnances@{PEER}"
INS = "279035121518989"  # the demo patient, at both operators
OUR_PATIENT, PEER_PATIENT = f"{INS}@patient.{OURS}", f"{INS}@patient.{PEER}"
YANN = f"185072901912347@patient.{PEER}"
TRAITS = ("Nom de naissance : LE GOFF\nPrénoms : Yann Pierre\nSexe : M\n"
          "Date de naissance : 14/07/1985\nLieu de naissance : 29019\n")
LINES = ("1. DOLIPRANE 1000 mg, comprimé ; 1 comprimé 3 fois par jour pendant 5 jours ;"
         " 2 boîtes\n")


def home(base: Path, domain: str, organisation: str) -> Config:
    shared = Path(os.environ.get("MSSGW_SHARED", ROOT.parent / "shared"))
    cfg = base / domain / "config.toml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text(f'[gateway]\ndomain = "{domain}"\nhostname = "mx.{domain}"\n'
                   f'[pki]\norganisation = "{organisation}"\nca_key_bits = 2048\n')
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli(["init", "--demo", "--config", str(cfg)]) == 0
    config = load_config(cfg)
    if (shared / "bdpm").is_dir():
        from gateway.db import connect
        from gateway.drugs.store import import_directory

        conn = connect(config.database_path)
        import_directory(conn, shared / "bdpm")
        conn.close()
    return config


def trust(config: Config, other: Config) -> None:
    from gateway import pki
    from gateway.pki.files import Layout
    from gateway.pki.kinds import CA

    for ca in (CA.ROOT, CA.SERVERS):
        pki.add_anchor(config, Layout.of(other).ca_cert(ca).read_bytes())


def mail(sender: str, to: str, body: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, "Ordonnance"
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    msg.set_content(body)
    return msg.as_bytes()


def delivered(plan: object, to: str) -> EmailMessage:
    for d in plan.deliveries:  # type: ignore[attr-defined]
        if to in d.recipients:
            return message_from_bytes(d.data, policy=policy.default)  # type: ignore[return-value]
    raise AssertionError(f"nothing delivered to {to}")


def forward(patient: str, to: str, got: EmailMessage) -> bytes:
    fwd = EmailMessage()
    fwd["From"], fwd["To"], fwd["Subject"] = patient, to, "Fwd: ordonnance"
    fwd["Message-ID"] = make_msgid()
    fwd.set_content("Bonjour, voici mon ordonnance.\n")
    fwd.add_attachment(got)
    return fwd.as_bytes()


def cpu_ms(label: str, calls: list[Callable[[], object]]) -> list[object]:
    """Each call's CPU time (this process: the flows run here), median and p90."""
    times, out = [], []
    for call in calls:
        start = time.process_time()
        out.append(call())
        times.append((time.process_time() - start) * 1000)
    times.sort()
    p90 = times[min(len(times) - 1, int(len(times) * 0.9))]
    print(f"  {label:<66} {statistics.median(times):7.1f} ms CPU (p90 {p90:.1f})", flush=True)
    return out


def main() -> int:
    from gateway.directory import open_directory
    from gateway.directory.model import RemoteEntry, RemoteKind
    from gateway.flows import dispense, prescribe, verify
    from gateway.runtime import Runtime

    with tempfile.TemporaryDirectory() as tmp:
        ours, peer = home(Path(tmp), OURS, "Bench Operator"), home(Path(tmp), PEER, "Peer")
        trust(ours, peer)
        trust(peer, ours)
        directory = open_directory(ours, actor="bench")
        for domain in (PEER, f"patient.{PEER}"):  # the flows run here: any DN will do
            directory.add_domain(domain, ["CN=mx.peer.localhost,O=Peer,C=FR"])
        directory.add_remote(RemoteEntry(
            address=PEER_PHARMACIST, kind=RemoteKind.PROFESSIONAL, name="Claire DURAND",
            rpps="10100678902", profession="21"))
        a, b = Runtime(ours).flows, Runtime(peer).flows
        print(f"two operators in one process, {N} messages per figure:")

        prescribe.handle(a, DOCTOR, (OUR_PATIENT,), mail(  # warm-up: first imports, caches
            DOCTOR, OUR_PATIENT, f"Patient : INS {INS}\n{LINES}"))
        cpu_ms("prescribe to one of our patients", [
            partial(prescribe.handle, a, DOCTOR, (OUR_PATIENT,),
                    mail(DOCTOR, OUR_PATIENT, f"Patient : INS {INS}\n{LINES}"))
            for _ in range(N)])
        plans = cpu_ms("prescribe to a patient elsewhere (traits in the form)", [
            partial(prescribe.handle, a, DOCTOR, (YANN,), mail(
                DOCTOR, YANN, f"Patient : INS 185072901912347\n{TRAITS}{LINES}"))
            for _ in range(N)])
        assert all(delivered(p, YANN)["X-Ordonnance-Id"] for p in plans)

        # The peer's prescriptions, and ours, as their patients receive them.
        theirs = [delivered(prescribe.handle(b, PEER_DOCTOR, (PEER_PATIENT,), mail(
            PEER_DOCTOR, PEER_PATIENT, f"Patient : INS {INS}\n{LINES}")), PEER_PATIENT)
            for _ in range(N)]
        mine = [delivered(prescribe.handle(a, DOCTOR, (OUR_PATIENT,), mail(
            DOCTOR, OUR_PATIENT, f"Patient : INS {INS}\n{LINES}")), OUR_PATIENT)
            for _ in range(N)]
        cpu_ms("verify a forward of ours (submission)", [
            partial(verify.handle, a, OUR_PATIENT, (PHARMACY,), forward(OUR_PATIENT, PHARMACY, m))
            for m in mine])
        plans = cpu_ms("verify a relayed forward registered elsewhere, first (kept here)", [
            partial(verify.handle, a, PEER_PATIENT, (PHARMACY,),
                    forward(PEER_PATIENT, PHARMACY, m)) for m in theirs])
        assert all("registry=elsewhere" in str(delivered(p, PHARMACY)["X-Ordonnance-Verification"])
                   for p in plans)
        cpu_ms("verify it again (the record kept here)", [
            partial(verify.handle, a, PEER_PATIENT, (PHARMACY,),
                    forward(PEER_PATIENT, PHARMACY, m)) for m in theirs])
        plans = cpu_ms("dispense it (eDISP signed, report to the prescriber elsewhere)", [
            partial(dispense.handle, a, PHARMACIST, (ROBOT,), mail(
                PHARMACIST, ROBOT, f"Ordonnance : {m['X-Ordonnance-Id']}\n1 : délivré ;"
                " 1 boîte\n")) for m in theirs])
        assert all(any(PEER_DOCTOR in d.recipients for d in p.deliveries)  # type: ignore[attr-defined]
                   for p in plans)

        # Ours, dispensed by the peer's pharmacist: the report that comes back by relay.
        for m in mine:
            assert verify.handle(b, OUR_PATIENT, (PEER_PHARMACIST,),
                                 forward(OUR_PATIENT, PEER_PHARMACIST, m)) is not None
        reports = [delivered(dispense.handle(b, PEER_PHARMACIST, (PEER_ROBOT,), mail(
            PEER_PHARMACIST, PEER_ROBOT, f"Ordonnance : {m['X-Ordonnance-Id']}\n1 : délivré ;"
            " 1 boîte\n")), DOCTOR).as_bytes() for m in mine]
        plans = cpu_ms("record a pharmacy elsewhere's report of ours (reported.record)", [
            partial(dispense.relayed, a, PEER_PHARMACIST, (DOCTOR,), r) for r in reports])
        notes = {n for p in plans for n in p.notes}  # type: ignore[attr-defined]
        assert all("recorded" in n and "not recorded" not in n for n in notes), notes
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
