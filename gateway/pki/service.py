"""The PKI's part of `mssgw serve`: keep our CRLs fresh while the gateway runs.

CRLs carry a nextUpdate ([pki] crl_days, 7 by default); verifiers everywhere (our listeners,
peers, signature checks) treat an expired CRL as stale. `mssgw init` re-publishes them, but a
gateway may run for weeks, so worker 0 (a server SINGLETON) re-publishes those past half their
lifetime at start and then every few hours. Publishing signs with the CA keys: it runs in a
thread, off the event loop.

Every worker (a server WORKER_TASK) also loads the current CRLs into its listeners' TLS
contexts every hour: OpenSSL checks client certificates against the CRLs a context was given,
and without this a worker started more than crl_days ago would refuse every certificate login
once they expire (and would learn of a revocation only through `verify_peer`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from gateway.config import Config
from gateway.pki.crl import refresh_due
from gateway.pki.store import fetch_files
from gateway.pki.tls import reload_crls

if TYPE_CHECKING:
    from gateway.runtime import Runtime

log = logging.getLogger("mssgw.pki")

CHECK_EVERY_SECONDS = 6 * 3600  # well inside half the shortest sensible CRL lifetime (1 day)
RELOAD_EVERY_SECONDS = 3600  # a re-published CRL reaches the listeners within the hour


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


async def start(runtime: Runtime, *, every: float = CHECK_EVERY_SECONDS) -> asyncio.Task[None]:
    return asyncio.create_task(_refresh_forever(runtime.config, every), name="mssgw crl refresh")


async def _fetch_forever(config: Config, every: float) -> None:
    from gateway.pki.external import refresh_crls

    while True:
        try:
            for r in await asyncio.to_thread(refresh_crls, config):
                if not r.ok:
                    log.warning("CRL %s: %s", r.url, r.detail)
                elif r.detail != "unchanged":
                    log.info("CRL %s: %s", r.url, r.detail)
        except Exception:  # never stop the gateway over a CRL; the next round tries again
            log.exception("could not refresh the external CAs' CRLs")
        await asyncio.sleep(every)


async def fetch_external(runtime: Runtime, *, every: float | None = None) -> asyncio.Task[None]:
    """Worker 0: the external CAs' CRLs from their distribution points, at start and every
    [pki] crl_refresh_hours (gateway/pki/external.py); the workers' hourly reload puts them in
    their TLS contexts."""
    config = runtime.config
    period = every if every is not None else config.pki.crl_refresh_hours * 3600.0
    return asyncio.create_task(_fetch_forever(config, period), name="mssgw crl fetch")


async def _reload_forever(config: Config, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        try:  # what another node issued or published meanwhile (a shared database)
            await asyncio.to_thread(fetch_files, config)
        except Exception:
            log.exception("could not fetch the certificates and CRLs from the database")
        # A few kilobytes read and parsed: cheap enough for the event loop, and it keeps the
        # contexts' stores changed by the thread that uses them.
        log.debug("CRLs reloaded into %d TLS contexts", reload_crls(config))


async def keep_loaded(
    runtime: Runtime, *, every: float = RELOAD_EVERY_SECONDS
) -> asyncio.Task[None]:
    return asyncio.create_task(_reload_forever(runtime.config, every), name="mssgw crl reload")
