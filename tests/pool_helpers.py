"""A pipeline step that hangs in the process pool on request (for the deadline tests)."""

from __future__ import annotations

import time

from gateway import pipeline


async def hang_step(message: pipeline.Message, outcome: pipeline.Outcome) -> pipeline.Outcome:
    if b"X-Test-Hang: yes" in message.data:
        await pipeline.run_cpu(time.sleep, 3600)
    return outcome
