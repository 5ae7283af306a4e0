"""SMTP: submission for our users, relay with trust-space operators, outbound delivery.

- `replies`: every refusal as (code, enhanced status, human sentence), no sockets.
- `checks`: pure message checks (smuggling, headers, size) used at DATA.
- `policy`: who may send what to whom (directory, trust space, patient rules).
- `conversations`: the small who-wrote-to-whom / closed-thread table behind the patient rules.
- `limits`: per client address and per account rate limits.
- `protocol`: the aiosmtpd `SMTP` subclass (implicit TLS, null sender, async AUTH).
- `handler`: the session logic for the submission and relay listeners.
- `service`: `start(runtime, reuse_port=...)`, the listeners, for `mssgw serve`.
- `outbound`: the delivery worker for the outbound queue (`gateway.store.interfaces`), and DSNs.
"""
