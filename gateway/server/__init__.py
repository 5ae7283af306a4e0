"""`mssgw serve`: the process model and the listeners.

Placeholder until the SMTP and IMAP listeners land: it runs no listener and says so.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading

from gateway.config import Config

log = logging.getLogger("mssgw.server")


def serve(config: Config) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    log.info("gateway %s: no listener is built yet; waiting (Ctrl-C stops)", config.gateway.domain)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    return 0
