"""A refusal as an HTTP answer: the same one-line message as the CLI, the field it names, and
the status its kind calls for.

| error | status |
|---|---|
| no or bad credentials (`Unauthenticated`) | 401, with `WWW-Authenticate: Bearer` |
| role or token scope does not allow it (`Forbidden`) | 403 |
| the named object does not exist (`NotFound`) | 404 |
| it already exists / clashes with the current state (`Conflict`) | 409 |
| a field breaks its rule (`InvalidField`, `InvalidIdentifier`, `MissingField`, passwords) | 422 |
| any other refusal (`GatewayError`) | 400 |

The API answers `{"error": "rpps: '10003829916' is invalid: ...", "field": "rpps"}`; the
console shows the page again with the message next to the field (console.py), or an error page.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.admins.model import Forbidden, Unauthenticated
from gateway.directory.passwords import WeakPassword
from gateway.directory.validate import InvalidField, MissingField
from gateway.errors import Conflict, GatewayError, InvalidIdentifier, NotFound

_FIELD = re.compile(r"^([a-z][a-z0-9_-]{0,40}): ")


def status_of(exc: GatewayError) -> int:
    if isinstance(exc, Unauthenticated):
        return 401
    if isinstance(exc, Forbidden):
        return 403
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Conflict):
        return 409
    if isinstance(exc, InvalidField | InvalidIdentifier | MissingField | WeakPassword):
        return 422
    return 400


def field_of(exc: Exception) -> str | None:
    """The field a refusal names: its `field`, else the word before the first colon."""
    field = getattr(exc, "field", None)
    if isinstance(field, str) and field:
        return field
    m = _FIELD.match(str(exc))
    return m.group(1) if m else None


def body_of(exc: GatewayError) -> dict[str, Any]:
    field = field_of(exc)
    return {"error": str(exc), **({"field": field.replace("-", "_")} if field else {})}


def api_response(exc: GatewayError) -> JSONResponse:
    status = status_of(exc)
    headers = {"WWW-Authenticate": 'Bearer realm="mssgw"'} if status == 401 else None
    return JSONResponse(body_of(exc), status_code=status, headers=headers)


def _is_console(request: Request) -> bool:
    return request.url.path.startswith("/console")


def install(app: FastAPI) -> None:
    @app.exception_handler(GatewayError)
    async def gateway_error(request: Request, exc: GatewayError) -> Response:
        if _is_console(request):
            from gateway.web.console import error_page

            return error_page(request, exc)
        return api_response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        # One line naming the field, like every other refusal (FastAPI's default is a list of
        # pydantic error objects).
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(x) for x in first.get("loc", ()) if x not in ("body", "query", "path")]
        field = loc[-1] if loc else None
        message = str(first.get("msg", "invalid request")).lower()
        if first.get("type") == "json_invalid":
            return JSONResponse({"error": "body: not valid JSON"}, status_code=400)
        text = f"{field}: {message}" if field else message
        return JSONResponse(
            {"error": text, **({"field": field} if field else {})}, status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if _is_console(request) and exc.status_code == 404:
            from gateway.web.console import error_page

            return error_page(request, NotFound("page: no such page in the console"))
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))
