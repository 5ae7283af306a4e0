"""The administrators' HTTP faces: the REST API (`/api/v1`) and the web console (`/console`).

Both are thin: they authenticate the caller, call the application services the CLI calls
(`gateway/<capability>/admin.py`, `gateway/admins`), and render the answer as JSON or as a
French HTML page. One implementation of every rule, three faces.

- `errors.py`: a `GatewayError` as an HTTP answer (status from its class, the one-line message,
  the field it names).
- `auth.py`: who is calling: an API token or a client certificate for the API, a session cookie
  for the console (password + TOTP, or certificate); roles and scopes become a `Caller`.
- `services.py`: the services of one request, over storage opened for the caller and closed
  after.
- `api.py`: the REST API; its OpenAPI document at `/api/v1/openapi.json`.
- `console.py` (+ `templates/`, `static/`): the server-rendered console, with CSRF tokens on
  every form and a strict Content-Security-Policy (no script at all).

`register(app, context)` adds both to the HTTPS listener's FastAPI application.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI


def register(app: FastAPI, context: Any) -> None:
    """The listener's extension: the API and the console, their error handlers and headers."""
    from gateway.web import api, console, errors

    errors.install(app)
    api.register(app)
    console.register(app)
