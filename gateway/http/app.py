"""The FastAPI application of the HTTPS listener, and its extension point.

An extension is a typed function `(app: FastAPI, context: WebContext) -> None` that adds what it
serves, usually `app.include_router(router)`. `create_app` runs every extension once per worker
process, at start; the application then lives as long as the worker.

Route handlers reach the process's objects through the `Context` dependency:

    @router.get("/thing")
    def thing(ctx: Context) -> dict[str, str]:
        return {"domain": ctx.config.gateway.domain}

Blocking work (SQLite, files) goes in plain `def` handlers, which FastAPI runs in a thread;
`async def` handlers run on the worker's event loop, shared with the mail sessions, and must not
block.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, FastAPI, Request

from gateway import __version__
from gateway.config import Config
from gateway.directory import Directory
from gateway.health import Readiness
from gateway.runtime import Runtime


@dataclass
class WebContext:
    """What the handlers of one worker process may use: the process's composition root
    (`runtime`: its stores and services) and what the listener adds. One per application."""

    runtime: Runtime
    readiness: Readiness = field(init=False)

    def __post_init__(self) -> None:
        self.readiness = Readiness(self.runtime.config, self.runtime.outbound_queue)

    @property
    def config(self) -> Config:
        return self.runtime.config

    def directory(self, actor: str) -> Directory:
        """The trust directory, its changes audited under `actor` (the authenticated
        administrator); the caller closes it. Blocking (SQLite): use it from a `def` handler."""
        return self.runtime.storage.directory(actor)


Extension = Callable[[FastAPI, WebContext], None]


def web_context(request: Request) -> WebContext:
    context: WebContext = request.app.state.mssgw
    return context


# In a handler's signature: `ctx: Context`.
Context = Annotated[WebContext, Depends(web_context)]


def create_app(context: WebContext, extensions: Sequence[Extension] | None = None) -> FastAPI:
    """The application for one worker: the gateway's own extensions (`extensions.default()`)
    unless `extensions` is given (tests, a composition root)."""
    if extensions is None:
        from gateway.http.extensions import default

        extensions = default()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.started.set()
        yield

    app = FastAPI(
        title="mssgw",
        version=__version__,
        description="Secure health-mail gateway: health, metrics and administration.",
        lifespan=lifespan,
        # FastAPI's /docs and /redoc pages load their scripts from a CDN: not on a health
        # gateway's administration port. The OpenAPI document itself is served.
        docs_url=None,
        redoc_url=None,
    )
    app.state.mssgw = context
    app.state.started = asyncio.Event()
    for extend in extensions:
        extend(app, context)
    return app
