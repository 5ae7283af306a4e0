"""XDM packages packed, signed and verified per second, with the real PKI of a throw-away
gateway (created in a temporary folder). One process, then verification in a process pool over
every core (as the servers run it). Bounded: about 2 s per measurement, plus `mssgw init`."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from gateway import pki
from gateway.cli import main as mssgw
from gateway.config import load_config
from gateway.directory import Professional, open_directory
from gateway.signature import sign_package, verify_package
from gateway.signature.trust import check_package, pki_check, sign_as, signer_for
from gateway.xdm import pack, read_package

SECONDS = 2.0
SHARED = Path(os.environ.get("MSSGW_SHARED", Path(__file__).resolve().parents[2] / "shared"))
EXAMPLE = SHARED / "xdm-examples" / "eP-MED-DM_2024.01_PosoStruct" / "IHE_XDM.ZIP"
EMAIL = "bench@bench.localhost"



def rate(label: str, fn: Callable[[], object]) -> None:
    fn()  # warm-up (schemas, imports)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < SECONDS:
        fn()
        n += 1
    elapsed = time.perf_counter() - start
    print(f"{label}: {n / elapsed:8.1f}/s  ({elapsed / n * 1000:.1f} ms each, 1 process)")




def main() -> int:
    if not EXAMPLE.is_file():
        print(f"skipped: {EXAMPLE} not found (set MSSGW_SHARED)")
        return 0
    with zipfile.ZipFile(EXAMPLE) as zf:
        doc = zf.read("IHE_XDM/SUBSET01/DOC0001.XML")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "config.toml"
        cfg.write_text('[gateway]\ndomain = "bench.localhost"\n[pki]\nca_key_bits = 2048\n')
        with contextlib.redirect_stdout(io.StringIO()):
            if mssgw(["init", "--config", str(cfg)]) != 0:
                return 1
        config = load_config(cfg)
        open_directory(config).add_professional(
            EMAIL, Professional(rpps="10100123453", adeli=None, family_name="BENCH",
                                given_name="Doc", profession="10")
        )
        pki.issue(config, "personal-sign", EMAIL, "Dr Bench")
        signer = signer_for(config, EMAIL)
        check = pki_check(config)
        unsigned = pack([doc])
        signed = sign_package(unsigned, signer)
        print(f"package: 1 prescription of {len(doc)} bytes, {len(signed)} bytes signed")
        rate("pack          ", lambda: pack([doc]))
        rate("read_package  ", lambda: read_package(signed))
        rate("sign_package  ", lambda: sign_package(unsigned, signer))
        rate("verify_package", lambda: verify_package(signed, check))
        workers = os.cpu_count() or 1
        # As the servers do: check_package(config, data) in a process pool.
        with ProcessPoolExecutor(workers) as pool:
            assert all(r.valid for r in pool.map(check_package, [config] * workers,
                                                 [signed] * workers))
            done, start = 0, time.perf_counter()
            while time.perf_counter() - start < SECONDS:
                batch = 4 * workers
                results = pool.map(check_package, [config] * batch, [signed] * batch)
                done += sum(r.valid for r in results)
            elapsed = time.perf_counter() - start
        print(f"check_package, pool of {workers}: {done / elapsed:8.1f} packages/s")
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(sign_as, [config] * workers, [EMAIL] * workers, [unsigned] * workers))
            done, start = 0, time.perf_counter()
            while time.perf_counter() - start < SECONDS:
                batch = 4 * workers
                done += len(list(pool.map(sign_as, [config] * batch, [EMAIL] * batch,
                                          [unsigned] * batch)))
            elapsed = time.perf_counter() - start
        print(f"sign_as, pool of {workers}:       {done / elapsed:8.1f} packages/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
