"""The extensions of the gateway's HTTPS application, in the order they are added.

Each is an `Extension` (gateway/http/app.py): `(app: FastAPI, context: WebContext) -> None`.
A capability that serves HTTP adds its `register` function here.
"""

from __future__ import annotations

from gateway.http.app import Extension


def default() -> list[Extension]:
    from gateway import web
    from gateway.http import routes

    return [routes.register, web.register]
