"""CDA documents built and validated per second (schema + own rules; schematron separately),
in one process and in a process pool over every core (as the servers run it). The embedded PDF
is the real ordonnance. Bounded: about 2 s per measurement.

Then the CI-SIS schematron layers (Saxon-HE through the ANS compile chain), the chain's XSLT
as it comes beside its rewrite (documents.svrl_rewrite, what the gateway runs): for each
layer, in a fresh process, the XSLT generation (cold cache), Saxon's compile (warm cache) and
the process's resident memory after it; then the cost per document of each layer once
compiled, and whether both report the same. A few minutes (StrucMin's 10 MB stylesheet). The
load average is printed: on a shared machine, read the ratios more than the times."""

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
    print(f"prescription: {len(P.lines)} lines, {len(DOC) // 1024} KiB with the PDF;"
          f" {_load()}")
    measure("build prescription", build)
    measure("parse prescription", parse)
    measure("build + schema + own rules (prescription)", build_validate)
    measure("build + schema + own rules (dispensation)", dispensation)
    measure("build + schema + volet + own rules", build_validate_fast)
    pooled()
    layers()
    return 0


LAYER_NAMES = ("volet", "IHE", "ModelesDeContenusCDA", "Modeles_ANS", "StrucMin")
GENERIC = LAYER_NAMES[1:]


def _load() -> str:
    """The machine's load average: on a shared machine, the figures are read against it."""
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def _rss_mb() -> float:
    status = Path("/proc/self/status").read_text().splitlines()
    return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


def _compile_child(layers: str, cache: str, rewrite: str) -> None:
    """In a fresh process: compile `layers` (generating their XSLT unless cached), say how
    long (wall and CPU) and how much memory the process holds after it."""
    from gateway.documents import schematron

    engine = schematron.engine()
    t0, c0 = time.perf_counter(), time.process_time()
    for name in layers.split(","):
        layer = next(g for g in schematron.GENERIC_LAYERS if g.name == name) \
            if name in GENERIC else schematron.volet_layer("prescription", "2024.01")
        engine.compiled(SCHEMATRONS, layer, Path(cache), rewrite=rewrite == "1")
    print(json.dumps({"first": time.perf_counter() - t0, "cpu": time.process_time() - c0,
                      "rss_mb": _rss_mb()}))


def _child(layers: str, cache: str, rewrite: bool) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--compile", layers, cache,
                          "1" if rewrite else "0"],
                         capture_output=True, text=True, check=True).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def _cpu(fn: Callable[[], object], n: int) -> tuple[float, float]:
    """(wall, CPU) ms per call over `n` calls, after a warm-up call."""
    fn()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        fn()
    return ((time.perf_counter() - t0) / n * 1000, (time.process_time() - c0) / n * 1000)


def _broken_copies(data: bytes, n: int) -> list[bytes]:
    import random

    from lxml import etree

    from gateway.xmlsafe import parse_xml

    rnd = random.Random(13)
    out = []
    for _ in range(n):
        tree = parse_xml(data)
        elements = list(tree.getroot().iter(etree.Element))[1:]
        for el in rnd.sample(elements, 12):
            parent = el.getparent()
            if parent is not None and rnd.random() < 0.5:
                parent.remove(el)
            elif el.attrib:
                del el.attrib[rnd.choice(list(el.attrib))]
        out.append(etree.tostring(tree))
    return out


def layers() -> None:
    """The schematron layers: the chain's XSLT as it comes ("chain") and its rewrite
    (documents.svrl_rewrite, what the gateway runs): compile time and memory in a fresh
    process, CPU per document, and whether both report the same on the official examples,
    this prescription and broken copies of them."""
    from gateway.documents import schematron
    from gateway.xmlsafe import parse_xml

    with tempfile.TemporaryDirectory() as cache:
        print("schematron layers, each in a fresh process (generate: cold cache; compile:"
              " warm cache; memory after it), the chain's XSLT -> its rewrite:")
        for layer in LAYER_NAMES:
            cold = _child(layer, cache, True)
            plain = _child(layer, cache, False)
            fast = _child(layer, cache, True)
            print(f"  {layer:22s} generate + compile {cold['first']:5.1f} s;"
                  f" compile {plain['first']:5.1f} -> {fast['first']:5.1f} s"
                  f" (CPU {plain['cpu']:5.1f} -> {fast['cpu']:5.1f} s),"
                  f" {plain['rss_mb']:4.0f} -> {fast['rss_mb']:4.0f} MB", flush=True)
        every = ",".join(GENERIC)
        plain, fast = _child(every, cache, False), _child(every, cache, True)
        print(f"  the four generic layers in one process (the validator): compile"
              f" {plain['first']:.1f} -> {fast['first']:.1f} s (CPU {plain['cpu']:.1f} ->"
              f" {fast['cpu']:.1f} s), {plain['rss_mb']:.0f} -> {fast['rss_mb']:.0f} MB",
              flush=True)

        engine = schematron.engine()
        kit = Kit(SCHEMA, SCHEMATRONS, Path(cache))
        disp = build_dispensation(samples.dispensation())
        node = engine.document(parse_xml(DOC))
        print("  per prescription (ms wall / ms CPU), chain -> rewrite:")
        totals = [0.0, 0.0]
        for name in LAYER_NAMES:
            layer = next(g for g in schematron.GENERIC_LAYERS if g.name == name) \
                if name in GENERIC else schematron.volet_layer("prescription", "2024.01")
            times = []
            for rewrite in (False, True):
                times.append(_cpu(lambda layer=layer, rewrite=rewrite: engine.run(
                    SCHEMATRONS, layer, node, Path(cache), rewrite), 5 if not rewrite else 20))
            if name in GENERIC:
                totals[0] += times[0][1]
                totals[1] += times[1][1]
            print(f"    {name:22s} {times[0][0]:6.1f} / {times[0][1]:6.1f} ->"
                  f" {times[1][0]:6.1f} / {times[1][1]:6.1f}", flush=True)
        print(f"    the four generic layers: {totals[0]:.1f} -> {totals[1]:.1f} ms CPU")
        measure("  every layer, per prescription (rewritten)",
                lambda: validate_document(DOC, kit=kit))
        measure("  every layer, per dispensation (rewritten)",
                lambda: validate_document(disp, kit=kit))
        examples = [f.read_bytes() for f in sorted((SHARED / "ci-sis/ExemplesCDA").glob("*.xml"))]
        docs = [DOC, disp, *examples]
        docs += [c for d in docs for c in _broken_copies(d, 4)]
        same, found = 0, 0
        for data in docs:
            node = engine.document(parse_xml(data))
            reports = [[(p.location, p.message, p.severity)
                        for g in schematron.GENERIC_LAYERS
                        for p in engine.run(SCHEMATRONS, g, node, Path(cache), rewrite)]
                       for rewrite in (False, True)]
            same += reports[0] == reports[1]
            found += len(reports[0])
        print(f"  the rewrite reports what the chain reports: {same} of {len(docs)} documents"
              f" ({found} problems in all)", flush=True)
        print(f"  {_load()}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--compile"]:
        _compile_child(sys.argv[2], sys.argv[3], sys.argv[4])
        raise SystemExit(0)
    raise SystemExit(main())
