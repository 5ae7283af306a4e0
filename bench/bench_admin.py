"""Administration listings at an operator's scale: one page of the directory, of the certificate
index, of the prescription registry and of the audit log, as the API and the console ask for
them.

A directory of 100,000 mailboxes (MSSGW_BENCH_MAILBOXES), a certificate index of as many rows,
a registry of 100,000 prescriptions (MSSGW_BENCH_PRESCRIPTIONS) and an audit log of 500,000
entries (MSSGW_BENCH_AUDIT) in a temporary gateway home. Each figure
is the median of a few calls; "before" is what the services did until the listings were pushed
down to the stores (read every row, then cut the page in memory), measured on the same data.
Rows are written straight into the tables as the repositories write them (one transaction:
adding 100,000 mailboxes one by one, each with its fsync, would take minutes).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.admins.model import Caller  # noqa: E402
from gateway.admins.paging import paginate  # noqa: E402
from gateway.audit import AuditFile, AuditService, no_record  # noqa: E402
from gateway.cli import main  # noqa: E402
from gateway.config import load_config  # noqa: E402
from gateway.directory import open_directory  # noqa: E402
from gateway.directory.admin import MailboxService  # noqa: E402
from gateway.directory.identity import default_display_name, normalise  # noqa: E402
from gateway.directory.model import MailboxKind, Patient, Professional  # noqa: E402
from gateway.directory.sqlite import _details_json  # noqa: E402
from gateway.identifiers import ins_key, luhn_valid  # noqa: E402
from gateway.pki import store  # noqa: E402
from gateway.pki.admin import CertificateService  # noqa: E402
from gateway.prescriptions.admin import PrescriptionService  # noqa: E402
from gateway.prescriptions.sqlite_registry import SQLiteRegistry  # noqa: E402

MAILBOXES = int(os.environ.get("MSSGW_BENCH_MAILBOXES", "100000"))
AUDIT = int(os.environ.get("MSSGW_BENCH_AUDIT", "500000"))
PRESCRIPTIONS = int(os.environ.get("MSSGW_BENCH_PRESCRIPTIONS", "100000"))
DOMAIN = "bench.localhost"
NAMES = ["Martin", "Bernard", "Thomas", "Petit", "Robert", "Richard", "Durand", "Dubois",
         "Moreau", "Laurent", "Simon", "Michel", "Lefebvre", "Leroy", "Roux", "David"]


def timed(label: str, fn: Callable[[], object], runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    ms = statistics.median(times) * 1000
    print(f"  {label}: {ms:,.1f} ms")
    return ms


def rpps(n: int) -> str:
    body = f"1{n:09d}"
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


def ins(n: int) -> str:
    """A valid INS, unique for n < 1,000,000: a woman born in 1979 + n % 20, month 1 + n % 12."""
    body = f"2{79 + n % 20:02d}{1 + n % 12:02d}75{n // 1000 % 1000:03d}{n % 1000:03d}"
    return body + f"{ins_key(body):02d}"


def fill_directory(directory, n: int) -> None:  # type: ignore[no-untyped-def]
    """`n` mailboxes, 90% professionals, 10% patients, written as `SQLiteDirectory._add`
    writes them."""
    rows = []
    now = datetime.now(UTC).isoformat(timespec="seconds")
    for i in range(n):
        if i % 10 == 9:
            p = Patient(ins=ins(i), birth_name=NAMES[i % 16].upper(), given_names="Marie",
                        sex="F", birth_date=datetime(1979 + i % 20, 1 + i % 12, 1).date(),
                        birth_place="75056")
            kind, identity = MailboxKind.PATIENT, normalise(MailboxKind.PATIENT, p)
            addr = f"{p.ins.lower()}@patient.{DOMAIN}"
        else:
            kind = MailboxKind.PER
            identity = normalise(kind, Professional(
                rpps=rpps(i), adeli=None, family_name=NAMES[i % 16], given_name=f"Prénom{i}",
                profession="10", specialty="SM26"))
            addr = f"dr.{i:06d}@{DOMAIN}"
        display = default_display_name(identity)
        rows.append((addr, kind.value, display, addr.rpartition("@")[2],
                     getattr(identity, "rpps", None), getattr(identity, "ins", None),
                     _details_json(identity), directory._search_text(addr, display, identity),
                     now, now))
    with directory._change() as conn:
        conn.executemany(
            "INSERT INTO directory_mailbox (address, kind, display_name, state, domain, rpps,"
            " ins, details, search, created_at, updated_at)"
            " VALUES (?, ?, ?, 'active', ?, ?, ?, ?, ?, ?, ?)", rows)


def fill_certificates(config, n: int) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC).replace(microsecond=0)
    rows = []
    for i in range(n):
        end = now + timedelta(days=(i % 900) - 100)  # some expired, some expiring soon
        rows.append((f"{i + 1:040X}", "personal-auth", "persons",
                     f"CN={NAMES[i % 16]} {i},O=Bench,C=FR", f"{NAMES[i % 16]} {i}",
                     f"dr.{i:06d}@{DOMAIN}", (end - timedelta(days=1000)).isoformat(),
                     end.isoformat(), "00" * 32, (now - timedelta(seconds=n - i)).isoformat(),
                     now.isoformat() if i % 50 == 0 else None))
    with store.connection(config) as conn:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO pki_certificates(serial, kind, ca, subject_dn, common_name, email,"
            " not_before, not_after, fingerprint, issued_at, revoked_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        conn.execute("COMMIT")


def fill_audit(path: Path, n: int) -> None:
    start = datetime.now(UTC) - timedelta(days=30)
    with path.open("a", encoding="utf-8") as f:
        for i in range(n):
            actor = "gateway" if i % 4 else f"admin:{NAMES[i % 16].lower()}"
            action = ("prescription.register", "dmp.submit", "imap.read", "directory.show")[i % 4]
            f.write(json.dumps({
                "at": (start + timedelta(seconds=i * 5)).isoformat(timespec="microseconds"),
                "actor": actor, "action": action, "target": f"dr.{i % MAILBOXES:06d}@{DOMAIN}",
                "details": {"patient": ins(i), "lines": i % 7}}, ensure_ascii=False,
                sort_keys=True) + "\n")


def fill_registry(conn, n: int) -> None:  # type: ignore[no-untyped-def]
    """`n` prescriptions of one line each, one every 5 minutes up to now, from 1,000 patients
    and 500 prescribers, written as `SQLiteRegistry.register` writes them."""
    start = datetime.now(UTC) - timedelta(minutes=5 * n)
    rows, lines = [], []
    for i in range(n):
        at = start + timedelta(minutes=5 * i)
        ident = f"BENCH{i:013d}"
        rows.append((ident, f"dr.{i % 500:06d}@{DOMAIN}", rpps(i % 500), ins(i % 1000),
                     f"{ins(i % 1000)}@patient.{DOMAIN}", at.isoformat(), at.date().isoformat(),
                     (at + timedelta(days=90)).date().isoformat(),
                     (at + timedelta(days=90)).date().isoformat(), "active", at.isoformat()))
        lines.append((ident, 1, "L1", "DOLIPRANE 1000 mg", "2", "boîte", 0, 1))
    with conn:
        conn.executemany(
            "INSERT INTO prescriptions (identifier, prescriber_address, prescriber_rpps,"
            " patient_ins, patient_address, prescribed_at, prescribed_on, validity_end,"
            " dispensable_until, status, registered_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
        conn.executemany(
            "INSERT INTO prescription_lines (identifier, position, line_id, label, quantity,"
            " quantity_unit, renewals, substitutable) VALUES (?,?,?,?,?,?,?,?)", lines)


def main_bench() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "config.toml"
        cfg.write_text(f'[gateway]\ndomain = "{DOMAIN}"\n')
        with contextlib.redirect_stdout(io.StringIO()):
            main(["init", "--config", str(cfg)])
        config = load_config(cfg)
        caller = Caller.local("bench")

        print(f"directory of {MAILBOXES:,} mailboxes (one page: 25, as the console shows)")
        start = time.perf_counter()
        directory = open_directory(config)
        fill_directory(directory, MAILBOXES)
        print(f"  (written in {time.perf_counter() - start:.1f} s)")
        mailboxes = MailboxService(directory, no_record, caller)
        timed("before: every mailbox read, then the first page cut",
              lambda: paginate(directory.list_mailboxes(), 0, 25), runs=3)
        timed("first page", lambda: mailboxes.page(limit=25))
        timed("last page", lambda: mailboxes.page(offset=MAILBOXES - 25, limit=25))
        timed("professionals (kind=PER), page 100", lambda: mailboxes.page(
            kind="PER", offset=2475, limit=25))
        timed("search 'martin' (1 in 16), first page and count", lambda: mailboxes.page(
            search="martin", limit=25))
        timed("search an RPPS (one match)", lambda: mailboxes.page(search=rpps(4242)))
        timed("search two words 'durand prenom12'", lambda: mailboxes.page(
            search="durand prenom12", limit=25))
        timed("dashboard: mailboxes by kind", directory.count_by_kind)
        directory.close()

        print(f"certificate index of {MAILBOXES:,} certificates")
        fill_certificates(config, MAILBOXES)
        certificates = CertificateService(config, no_record, caller)

        def before_certificates() -> object:
            from gateway.pki import ca

            found = list(reversed(ca.list_certificates(config)))
            return paginate(found, 0, 25)

        timed("before: every certificate read, then the first page cut", before_certificates,
              runs=3)
        timed("first page, newest first", lambda: certificates.page(limit=25))
        timed("status valid, page 10", lambda: certificates.page(status="valid", offset=225,
                                                                 limit=25))
        timed("search 'durand'", lambda: certificates.page(search="durand", limit=25))
        timed("dashboard: expiring within 30 days", certificates.expiring)

        print(f"prescription registry of {PRESCRIPTIONS:,} prescriptions")
        registry = SQLiteRegistry.open(config.database_path)
        fill_registry(registry.conn, PRESCRIPTIONS)
        prescriptions = PrescriptionService(registry, caller)
        timed("before: the newest 10,000 read, then the first page cut", lambda: paginate(
            registry.find(actor="bench", limit=10000), 0, 25), runs=3)
        timed("first page, newest first, and the count", lambda: prescriptions.page(limit=25))
        timed("page 400 (offset 9,975)", lambda: prescriptions.page(offset=9975, limit=25))
        timed("one patient's (100), first page", lambda: prescriptions.page(
            patient=ins(4242 % 1000), limit=25))
        timed("one prescriber's (200), by RPPS", lambda: prescriptions.page(
            prescriber=rpps(42), limit=25))
        timed("status active, page 10", lambda: prescriptions.page(
            status="active", offset=225, limit=25))
        registry.close()

        print(f"audit log of {AUDIT:,} entries")
        fill_audit(config.audit_log_path, AUDIT)
        size = config.audit_log_path.stat().st_size
        log = AuditFile(config.audit_log_path)
        service = AuditService(log, caller)
        timed(f"before: the whole log read ({size / 1e6:,.0f} MB), newest page cut",
              lambda: paginate(service.query()[::-1], 0, 25), runs=1)
        start = time.perf_counter()
        log.query(service._filter(None, None, None, None, None), limit=1)
        took = time.perf_counter() - start
        print(f"  first query, the index built from the whole log: {took:,.1f} s"
              f" ({AUDIT / took:,.0f} entries/s)")
        for i in range(1000):
            log.record("admin:bench", "directory.show", f"dr.{i:06d}@{DOMAIN}", {})
        timed("next query, 1,000 new entries to index first", lambda: service.page(limit=25),
              runs=1)
        timed("first page, newest first", lambda: service.page(limit=25))
        timed("page 400 (offset 9,975)", lambda: service.page(offset=9975, limit=25))
        timed("one target (a mailbox's history)", lambda: service.page(
            target=f"dr.{4242:06d}@{DOMAIN}", limit=25))
        timed("an action prefix 'directory.', page 10", lambda: service.page(
            action="directory.", offset=225, limit=25))
        timed("one actor", lambda: service.page(actor="admin:martin", limit=25))
        timed("words found often ('martin'): stops at a full page", lambda: service.page(
            search="martin", limit=25))
        timed("words found once (an INS): reads every candidate", lambda: service.page(
            search=ins(4242)), runs=1)
        log.close()


if __name__ == "__main__":
    main_bench()
