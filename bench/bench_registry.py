"""Registry and DMP figures: registrations, dispensations and DMP filings per second.

On a temporary SQLite database (WAL, synchronous=FULL, as in production), with the real audit
log (one fsynced line per access) and, for comparison, without it. Then two processes registering
at once into the same file (the gateway runs several workers). Bounded: about 1 s per loop.
"""

from __future__ import annotations

import multiprocessing
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from registry_fixtures import DOCTOR, PATIENT, prescription, report  # noqa: E402

from gateway.audit import no_record, recorder  # noqa: E402
from gateway.config import Config  # noqa: E402
from gateway.db import connect, transaction  # noqa: E402
from gateway.dmp import Actor, DocumentMetadata  # noqa: E402
from gateway.dmp.sqlite import SQLiteDMP  # noqa: E402
from gateway.prescriptions.registry import utcnow  # noqa: E402
from gateway.prescriptions.sqlite_registry import SQLiteRegistry  # noqa: E402

PACKAGE = b"PK" + bytes(60_000)  # about the size of an XDM package with its PDF
CDA = b"<ClinicalDocument/>" + bytes(20_000)


def rate(label: str, fn: Callable[[int], object], seconds: float = 1.0) -> int:
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn(n)
        n += 1
    print(f"{label}: {n / elapsed:,.0f}/s ({elapsed / n * 1000:.2f} ms each, n={n})", flush=True)
    return n


def _worker(db: str, seconds: float, out) -> None:
    reg = SQLiteRegistry.open(db)
    n, start = 0, time.perf_counter()
    now = utcnow()
    while time.perf_counter() - start < seconds:
        reg.register(
            prescription(date=now),
            prescriber_address=DOCTOR,
            patient_address=PATIENT,
            package=PACKAGE,
        )
        n += 1
    out.put(n)
    reg.close()


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        config = Config(home=home)
        now = utcnow()
        for label, audit in (("with audit log", recorder(config)), ("no audit", no_record)):
            reg = SQLiteRegistry.open(home / f"{label[:2]}.db", audit=audit)
            idents: list[str] = []

            def register(_: int, reg=reg, idents=idents) -> None:
                rec = reg.register(
                    prescription(date=now, lines=(("DOLIPRANE", "2", 1), ("AMOX", "1", 0))),
                    prescriber_address=DOCTOR,
                    patient_address=PATIENT,
                    package=PACKAGE,
                )
                idents.append(rec.identifier)

            n = rate(f"registrations ({label}, 2 lines, 60 kB package)", register)

            def dispense(i: int, reg=reg, idents=idents) -> None:
                reg.dispense(
                    report(idents[i % n], ("1", "1"), dispensation_id=f"d{i}", date=now), now=now
                )

            rate(f"dispensations ({label})", dispense, seconds=min(1.0, 0.9 * n / 100))

            def remaining(i: int, reg=reg, idents=idents) -> None:
                reg.remaining(idents[i % n], actor="pharmacie@x")

            rate(f"remaining() look-ups ({label})", remaining)
            reg.close()

        dmp = SQLiteDMP.open(home / "dmp.db", audit=recorder(config))
        gw = Actor.gateway()

        def metadata(unique_id: str, ins: str, prescription_id: str | None = None
                     ) -> DocumentMetadata:
            """A prescription's XDS metadata, as the flows file them."""
            return DocumentMetadata(
                unique_id=unique_id, patient_ins=ins, class_code="42", type_code="57833-6",
                format_code="urn:ihe:pharm:pre:2010", creation_time=now, title="Prescription",
                author_address=DOCTOR, prescription_id=prescription_id,
            )

        def file(i: int) -> None:
            dmp.submit(
                metadata(f"1.2.250.1.999.{i}", "279035121518989"),
                CDA,
                actor=gw,
                signature=b"<sig/>" * 500,
            )

        rate("DMP filings (20 kB CDA + signature, audited)", file)
        # One audit line per query (who read which patient, how many documents); the cost
        # grows with the documents listed, so the query runs on a patient with exactly 100.
        for i in range(100):
            dmp.submit(
                metadata(f"1.2.250.1.998.{i}", "179035121518942"),
                CDA,
                actor=gw,
            )
        rate(
            "DMP queries by patient, 100 documents listed (audited)",
            lambda i: dmp.find("179035121518942", actor=gw, class_codes=["42"]),
            seconds=0.5,
        )
        dmp.close()

        # What the doctor->patient flow does: register and file in the DMP, one commit, audited.
        conn = connect(home / "flow.db")
        audit = recorder(config)
        reg, dmp = SQLiteRegistry(conn, audit), SQLiteDMP(conn, audit)

        def register_and_file(i: int) -> None:
            p = prescription(date=now)
            with transaction(conn):
                reg.register(p, prescriber_address=DOCTOR, patient_address=PATIENT, package=PACKAGE)
                dmp.submit(
                    metadata(f"flow.{i}", "279035121518989", p.identifier),
                    CDA,
                    actor=gw,
                    signature=b"<sig/>" * 500,
                )

        rate("register + DMP filing in one transaction (audited)", register_and_file)
        conn.close()

        ctx = multiprocessing.get_context("spawn")
        out = ctx.Queue()
        db = str(home / "shared.db")
        SQLiteRegistry.open(db).close()  # migrate once before the race
        procs = [ctx.Process(target=_worker, args=(db, 1.0, out)) for _ in range(2)]
        for p in procs:
            p.start()
        total = sum(out.get(timeout=60) for _ in procs)
        for p in procs:
            p.join(timeout=30)
        print(f"registrations, 2 processes on one database (no audit): {total / 1.0:,.0f}/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
