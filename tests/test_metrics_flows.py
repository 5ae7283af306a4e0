"""The document flows run in each worker's process pool (spawned processes): what they count
(prescriptions registered and refused) must reach /metrics of a running `mssgw serve` as well
as what the listeners count in the worker itself."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from http_helpers import client
from smtp_helpers import submission
from test_operations import sample, wait_for
from test_smtp_crash import start_serve

from gateway.config import load_config
from tests.journey_helpers import DOCTOR, PATIENT, form_message, make_home

FORM = """Bonjour,

Patient : INS 279035121518989
1. DOLIPRANE 1000 mg, comprimé ; 1 comprimé 3 fois par jour pendant 5 jours ; 2 boîtes

Cordialement
"""

# A medicine the drug reference does not know: the doctor gets a refusal, nothing is registered.
UNKNOWN = FORM.replace("DOLIPRANE 1000 mg, comprimé", "ZZZNOTAMEDICINE 12 mg, comprimé")


def delivered(config, address: str) -> int:
    local, domain = address.split("@")
    return len(list(config.mailboxes_path.glob(f"{domain}/{local}/new/*")))


def test_prescription_counters_reach_metrics_of_serve(
        tmp_path: Path, _gateway_template: Path, shared_dir: Path) -> None:
    home = make_home(_gateway_template, tmp_path / "gw", shared_dir)
    cfg = home / "config.toml"
    cfg.write_text(cfg.read_text().replace("workers = 1", "workers = 2"))
    config = load_config(cfg)
    proc, ports = start_serve(cfg)
    try:
        with submission(config, ports["smtp submission"]) as c:
            c.send_message(form_message(DOCTOR, PATIENT, FORM))
        wait_for(lambda: delivered(config, PATIENT) == 1, timeout=120)
        before = delivered(config, DOCTOR)
        with submission(config, ports["smtp submission"]) as c:
            c.send_message(form_message(DOCTOR, PATIENT, UNKNOWN))
        wait_for(lambda: delivered(config, DOCTOR) > before, timeout=120)

        def scraped() -> str:
            with client(config, ports["https"]) as http:
                return http.get("/metrics").text

        # Whichever worker answers the scrape, the pool processes' counts are in it.
        def counted() -> str | None:
            text = scraped()
            return text if sample(text, "mssgw_prescriptions_total", event="refused") else None

        text = wait_for(counted)
        assert sample(text, "mssgw_prescriptions_total", event="registered") == 1
        assert sample(text, "mssgw_prescriptions_total", event="refused") == 1
        assert sample(text, "mssgw_messages_accepted_total", listener="submission") == 2
        assert delivered(config, PATIENT) == 1  # the refused one reached nobody
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
