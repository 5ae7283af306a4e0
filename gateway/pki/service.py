"""The PKI's part of `mssgw serve`: keep our CRLs fresh while the gateway runs.

CRLs carry a nextUpdate ([pki] crl_days, 7 by default); verifiers everywhere (our listeners,
peers, signature checks) treat an expired CRL as stale. `mssgw init` re-publishes them, but a
gateway may run for weeks, so worker 0 (a server SINGLETON) re-publishes those past half their
lifetime at start and then every few hours. Publishing signs with the CA keys: it runs in a
thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import logging

from gateway.config import Config
from gateway.pki.crl import refresh_due

log = logging.getLogger("mssgw.pki")

CHECK_EVERY_SECONDS = 6 * 3600  # well inside half the shortest sensible CRL lifetime (1 day)


async def _refresh_forever(config: Config, every: float) -> None:
    while True:
        try:
            for path in await asyncio.to_thread(refresh_due, config):
                log.info("re-published CRL %s", path)
        except Exception:
            # A CA key that cannot be read (passphrase missing...) must not stop the gateway;
            # the log says why, and the next round tries again.
            log.exception("could not re-publish the CRLs")
        await asyncio.sleep(every)


async def start(config: Config, *, every: float = CHECK_EVERY_SECONDS) -> asyncio.Task[None]:
    return asyncio.create_task(_refresh_forever(config, every), name="mssgw crl refresh")
