"""`/healthz`, `/readyz` and `/metrics`: what a load balancer, systemd and Prometheus poll.

- `/healthz`: 200 while the worker's event loop answers (the process is alive), with its pid.
- `/readyz`: 200 when every readiness check passes (gateway/health.py), else 503; the body
  says which check failed and why, as JSON.
- `/metrics`: the Prometheus text format, every worker process added up.

None of them needs authentication and none tells anything about patients or mailboxes: counts,
certificate subjects of the gateway's own CAs and anchors, and the folder paths of a failing
check.
"""

from __future__ import annotations

import asyncio
import os

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse, Response

from gateway.http.app import Context, WebContext

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, object]:
    # The worker's pid: which of the processes sharing the port answered.
    return {"status": "alive", "pid": os.getpid()}


@router.get(
    "/readyz",
    summary="Ready to take mail: storage reachable, queue moving, own certificate valid",
    responses={503: {"description": "Not ready; the body says which check failed"}},
)
async def readyz(ctx: Context) -> JSONResponse:
    checks = await ctx.readiness.checks()
    ready = all(c.ok for c in checks)
    body = {"ready": ready, "checks": {c.name: c.as_json() for c in checks}}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics of every worker process",
            response_class=Response)
async def metrics_endpoint(ctx: Context) -> Response:
    from gateway.metrics.exposition import CONTENT_TYPE, render

    body = await asyncio.to_thread(render, ctx.config, ctx.runtime.outbound_queue)
    return Response(body, media_type=CONTENT_TYPE)


def register(app: FastAPI, context: WebContext) -> None:
    app.include_router(router)
