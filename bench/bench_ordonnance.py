"""Ordonnance PDFs rendered per second: one process, then a process pool over every core (as
the servers run it). Bounded: about 3 s per measurement."""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from ordonnance_samples import bizone_prescription, prescription  # noqa: E402

from gateway.ordonnance import qr_png, render_pdf  # noqa: E402

SECONDS = 3.0


def _render_batch(n: int) -> int:
    p = prescription()
    for _ in range(n):
        render_pdf(p)
    return n


def single(label: str, fn) -> None:  # type: ignore[no-untyped-def]
    """Wall-clock rate, and CPU time per call: on a loaded machine the CPU figure is the one
    that says what a free core would do (1000 / cpu_ms per second per core)."""
    fn()  # warm-up: font files, imports
    n, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < SECONDS:
        fn()
        n += 1
    elapsed = time.perf_counter() - start
    cpu_ms = (time.process_time() - cpu) / n * 1000
    print(
        f"{label}: {n / elapsed:8.1f}/s  ({elapsed / n * 1000:.1f} ms wall, {cpu_ms:.1f} ms CPU"
        f" each: {1000 / cpu_ms:.0f}/s per free core)"
    )


def pooled() -> None:
    workers = os.cpu_count() or 1
    batch = 5
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_render_batch, [1] * workers))  # warm-up every worker
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < SECONDS:
            done += sum(pool.map(_render_batch, [batch] * workers))
        elapsed = time.perf_counter() - start
    load = os.getloadavg()[0]
    print(f"render_pdf, pool of {workers}: {done / elapsed:8.1f} PDFs/s (load average {load:.1f})")


def main() -> None:
    p, b = prescription(), bizone_prescription()
    single("render_pdf (3 lines)", lambda: render_pdf(p))
    single("render_pdf (bizone) ", lambda: render_pdf(b))
    single("qr_png              ", lambda: qr_png(p.identifier or ""))
    print(f"PDF size: {len(render_pdf(p))} bytes")
    pooled()


if __name__ == "__main__":
    main()
