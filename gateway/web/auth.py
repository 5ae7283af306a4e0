"""Who is calling the API or the console, as a `Caller` for the application services.

API: `Authorization: Bearer mssgw_<id>_<secret>` (a token an administrator created: scoped,
expiring, revocable), or a TLS client certificate of our CA bound to an administrator account
(`mssgw admin add NAME --certificate ...`), which the HTTPS listener passes in the ASGI `tls`
extension (`client_cert_chain`, PEM). Anything else is 401 with `WWW-Authenticate: Bearer`.

Console: a session cookie (`__Host-mssgw-session`: Secure, HttpOnly, SameSite=Strict, path /),
its secret stored hashed server-side with an idle and an absolute expiry; every state-changing
form carries the session's CSRF token, compared in constant time.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Annotated

from cryptography import x509
from fastapi import Depends, Request

from gateway.admins.accounts import caller_for
from gateway.admins.model import Admin, Caller, Session, Unauthenticated
from gateway.web.services import Services, accounts_of, config_of, open_services

SESSION_COOKIE = "__Host-mssgw-session"
LOGIN_COOKIE = "__Host-mssgw-login"  # the login form's CSRF token (before any session)
NEED_CREDENTIALS = (
    "authentication: send `Authorization: Bearer TOKEN` (an API token from `mssgw admin token"
    " create`) or a client certificate bound to an administrator"
)


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""


def client_certificate(request: Request) -> x509.Certificate | None:
    """The verified client certificate the listener passed (ASGI TLS extension), if any."""
    tls = (request.scope.get("extensions") or {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    if not chain:
        return None
    try:
        first = chain[0]
        data = first.encode() if isinstance(first, str) else first
        cert = x509.load_pem_x509_certificate(data)
    except ValueError:
        return None
    from gateway.pki.verify import verify_certificate

    rest = []
    for pem in chain[1:]:
        try:
            rest.append(x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str)
                                                        else pem))
        except ValueError:
            continue
    # The listener's handshake already checked the chain; checked again here (revocation at
    # this moment, the client purpose) because a certificate is a credential for the account.
    result = verify_certificate(config_of(request), cert, rest, "client")
    return cert if result.ok else None


def api_caller(request: Request) -> Caller:
    accounts = accounts_of(request)
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        admin, token = accounts.check_token(value.strip())
        return caller_for(admin, "api", token)
    cert = client_certificate(request)
    if cert is not None:
        holder = accounts.by_certificate(cert)
        if holder is not None:
            return caller_for(holder, "api")
    raise Unauthenticated(NEED_CREDENTIALS)


def api_services(caller: Annotated[Caller, Depends(api_caller)], request: Request
                 ) -> Iterator[Services]:
    yield from open_services(request, caller)


ApiServices = Annotated[Services, Depends(api_services)]


# --- console -------------------------------------------------------------------------------


class NotLoggedIn(Exception):
    """The console page needs a session: the handler redirects to the login page."""


def console_session(request: Request) -> tuple[Session, Admin] | None:
    found = accounts_of(request).session(request.cookies.get(SESSION_COOKIE, ""))
    if found is None:
        cert = client_certificate(request)
        if cert is not None and accounts_of(request).by_certificate(cert) is not None:
            return None  # the login page offers the certificate login
    return found


def console_caller(request: Request) -> tuple[Caller, Session]:
    found = console_session(request)
    if found is None:
        raise NotLoggedIn()
    session, admin = found
    return caller_for(admin, "console"), session


def check_csrf(session_csrf: str, submitted: str | None) -> None:
    if not submitted or not hmac.compare_digest(session_csrf, submitted):
        raise Unauthenticated("csrf: the form is out of date or was not sent by this console;"
                              " reload the page and try again")
