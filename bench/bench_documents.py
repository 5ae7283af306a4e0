"""CDA documents built and validated per second (schema + own rules; schematron separately),
in one process and in a process pool over every core (as the servers run it). The embedded PDF
is the real ordonnance. Bounded: about 2 s per measurement.

Then the CI-SIS schematron layers (Saxon-HE through the ANS compile chain): for each layer,
in a fresh process, the XSLT generation (cold cache), Saxon's compile (warm cache) and the
process's resident memory after it; then the cost per document of each layer once compiled.
The compile figures take a minute (StrucMin's 10 MB stylesheet)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from gateway.documents import samples
from gateway.documents.build import assign_ids, build_dispensation, build_prescription
from gateway.documents.parse import parse_document
from gateway.documents.validate import FAST_LAYERS, Kit, validate_document
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
    report = validate_document(build_prescription(P, PDF, QR), schema=SCHEMA,
                               layers=("schema", "rules"))
    assert report.ok


def build_validate_fast() -> None:
    report = validate_document(build_prescription(P, PDF, QR), schema=SCHEMA,
                               schematron_dir=SCHEMATRONS, layers=FAST_LAYERS)
    assert report.ok


def dispensation() -> None:
    report = validate_document(build_dispensation(samples.dispensation()), schema=SCHEMA,
                               layers=("schema", "rules"))
    assert report.ok


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
    measure("build + schema + volet + own rules", build_validate_fast)
    pooled()
    layers()
    return 0


LAYER_NAMES = ("volet", "IHE", "ModelesDeContenusCDA", "Modeles_ANS", "StrucMin")


def _compile_child(layer: str, cache: str) -> None:
    """In a fresh process: compile `layer` (generating its XSLT unless cached), say how long
    and how much memory the process holds after it."""
    t0 = time.perf_counter()
    kit = Kit(SCHEMA, SCHEMATRONS, Path(cache))
    validate_document(DOC, kit=kit, layers=(layer,))
    first = time.perf_counter() - t0
    status = Path("/proc/self/status").read_text().splitlines()
    rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
    print(json.dumps({"first": first, "rss_mb": rss / 1024}))


def _child(layer: str, cache: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--compile", layer, cache],
                         capture_output=True, text=True, check=True).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def layers() -> None:
    with tempfile.TemporaryDirectory() as cache:
        print("schematron layers, each in a fresh process (generate: cold cache;"
              " compile: warm cache; memory after it):")
        for layer in LAYER_NAMES:
            cold = _child(layer, cache)
            warm = _child(layer, cache)
            print(f"  {layer:22s} generate + compile {cold['first']:6.1f} s,"
                  f" compile {warm['first']:6.1f} s, {warm['rss_mb']:5.0f} MB", flush=True)
        kit = Kit(SCHEMA, SCHEMATRONS, Path(cache))
        disp = build_dispensation(samples.dispensation())
        for layer in ("schema", *LAYER_NAMES, "rules"):
            validate_document(DOC, kit=kit, layers=(layer,))  # compiled once in this process
            measure(f"  {layer}, per prescription", lambda layer=layer: validate_document(
                DOC, kit=kit, layers=(layer,)))
        measure("every layer, per prescription",
                lambda: validate_document(DOC, kit=kit))
        measure("every layer, per dispensation",
                lambda: validate_document(disp, kit=kit))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--compile"]:
        _compile_child(sys.argv[2], sys.argv[3])
        raise SystemExit(0)
    raise SystemExit(main())
