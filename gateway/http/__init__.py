"""The HTTPS listener of `mssgw serve`: one FastAPI application served in every worker.

- `app.py` — `create_app(context, extensions)`: the application, and the extension point
  (`Extension`: a function given the app and the process's `WebContext`, which adds routers).
- `extensions.py` — the extensions of the gateway's own application, in order.
- `routes.py` — `/healthz`, `/readyz`, `/metrics`.
- `service.py` — `start(config, reuse_port=...)` for `gateway.server`: Hypercorn, run inside
  the worker's event loop on a socket the worker binds (SO_REUSEPORT, like the mail listeners),
  with the gateway's own TLS context.

docs/architecture.md ("HTTPS listener") says how to add a router and test it.
"""
