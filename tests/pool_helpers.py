"""A pipeline step that hangs in the process pool on request (for the deadline tests)."""

from __future__ import annotations

import time

from gateway.pipeline import Message, Outcome, Pipeline


async def hang_step(pipeline: Pipeline, message: Message, outcome: Outcome) -> Outcome:
    if b"X-Test-Hang: yes" in message.data:
        await pipeline.run_cpu(time.sleep, 3600)
    return outcome
