"""The prescription journey's pipeline steps, in the order the root hands them to the pipeline
(`gateway.runtime.Runtime.pipeline`)."""

from __future__ import annotations

from gateway.flows import dispense, prescribe, verify
from gateway.pipeline import Step

STEPS: tuple[Step, ...] = (
    prescribe.step,  # doctor → patient: the ordonnance
    verify.step,  # patient → pharmacy: the verdict on a forwarded ordonnance
    dispense.step,  # pharmacy → prescriber: dispensations; cancellations
)
