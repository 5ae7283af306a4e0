"""CDA documents built and validated per second (schema + own rules; schematron separately),
in one process and in a process pool over every core (as the servers run it). The embedded PDF
is the real ordonnance. Bounded: about 2 s per measurement."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from gateway.documents import samples
from gateway.documents.build import assign_ids, build_dispensation, build_prescription
from gateway.documents.parse import parse_document
from gateway.documents.validate import validate_document
from gateway.ordonnance import qr_png, render_pdf

SECONDS = 2.0
ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("MSSGW_SHARED", ROOT.parent / "shared"))
SCHEMA = SHARED / "ci-sis/infrastructure/cda/CDA_extended.xsd"
SCHEMATRONS = SHARED / "ci-sis/schematrons"

P = assign_ids(samples.prescription())
PDF = render_pdf(P)
QR = qr_png(P.identifier or "")
DOC = build_prescription(P, PDF, QR)


def build() -> None:
    build_prescription(P, PDF, QR)


def build_validate() -> None:
    report = validate_document(build_prescription(P, PDF, QR), schema=SCHEMA)
    assert report.layers[0].status == "passed" and report.layers[2].status == "passed"


def build_validate_all() -> None:
    report = validate_document(build_prescription(P, PDF, QR), schema=SCHEMA,
                               schematron_dir=SCHEMATRONS)
    assert report.ok


def dispensation() -> None:
    validate_document(build_dispensation(samples.dispensation()), schema=SCHEMA)


def parse() -> None:
    parse_document(DOC)


def measure(label: str, fn: Callable[[], None]) -> None:
    fn()  # warm-up: schema compilation, imports
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < SECONDS:
        fn()
        n += 1
    elapsed = time.perf_counter() - start
    print(f"{label:48s} {n / elapsed:8.1f}/s  ({elapsed / n * 1000:.2f} ms each)", flush=True)


def _batch(n: int) -> int:
    for _ in range(n):
        build_validate()
    return n


def pooled() -> None:
    workers = os.cpu_count() or 1
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_batch, [1] * workers))  # warm-up every worker
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < SECONDS:
            n += sum(pool.map(_batch, [5] * workers))
        elapsed = time.perf_counter() - start
    print(f"{'build + schema + own rules, ' + str(workers) + ' processes':48s}"
          f" {n / elapsed:8.1f}/s", flush=True)


def main() -> int:
    if not SCHEMA.is_file():
        print(f"CI-SIS kit not found at {SHARED} (set MSSGW_SHARED): skipped")
        return 0
    print(f"prescription: {len(P.lines)} lines, {len(DOC) // 1024} KiB with the PDF")
    measure("build prescription", build)
    measure("parse prescription", parse)
    measure("build + schema + own rules (prescription)", build_validate)
    measure("build + schema + own rules (dispensation)", dispensation)
    measure("build + schema + schematron + own rules", build_validate_all)
    pooled()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
