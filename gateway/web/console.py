"""The web console (`/console/...`): server-rendered pages in French over the services the CLI
and the API call.

Pages: tableau de bord, boîtes aux lettres, domaines de confiance, certificats, ordonnances, DMP,
journal d'audit, file d'attente, jetons d'API. Lists search and page (`?q=...&page=N`); a form
refused by a service is shown again with the CLI's message next to the field it names.

Security: a session cookie after password + TOTP (or a client certificate, or a one-time link
from `mssgw admin login-link`); every POST carries the session's CSRF token (the login form its
own, in a cookie); pages are never cached; the Content-Security-Policy allows our stylesheet
and nothing else: no script at all, no frames, forms only to ourselves.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from gateway.admins.model import Caller, Session, Unauthenticated
from gateway.admins.paging import Page
from gateway.errors import GatewayError
from gateway.french import french, say
from gateway.web import errors
from gateway.web.auth import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    NotLoggedIn,
    check_csrf,
    client_address,
    client_certificate,
    console_caller,
)
from gateway.web.services import Services, accounts_of, config_of

HERE = Path(__file__).parent
PREFIX = "/console"
PAGE_SIZE = 25
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Strict-Transport-Security": "max-age=31536000",
    "Cross-Origin-Opener-Policy": "same-origin",
}

templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(prefix=PREFIX, include_in_schema=False)

# What a redirect after a change says (`?fait=CODE`): fixed texts, never text from the URL.
DONE = {
    "added": "Boîte aux lettres créée.",
    "updated": "Boîte aux lettres modifiée.",
    "unchanged": "Rien n'a changé : la boîte est telle qu'elle était.",
    "suspended": "Boîte aux lettres suspendue : plus de connexion ni de distribution.",
    "resumed": "Boîte aux lettres réactivée.",
    "deleted": "Boîte aux lettres supprimée.",
    "password": "Mot de passe enregistré.",
    "domain-added": "Domaine ajouté.",
    "domain-removed": "Domaine retiré.",
    "issued": "Certificat émis.",
    "revoked": "Certificat révoqué ; la liste de révocation est republiée.",
    "cancelled": "Ordonnance annulée.",
    "retry": "Le message sera réessayé au prochain passage.",
    "bounced": "Message renvoyé à son expéditeur avec un avis de non-remise.",
    "queue-deleted": "Message supprimé de la file (sans avis de non-remise).",
    "token-revoked": "Jeton révoqué.",
}

MAILBOX_KINDS = {"PER": "Professionnel", "ORG": "Structure", "APP": "Application",
                 "PATIENT": "Patient"}
ORG_KINDS = {"pharmacy": "Pharmacie", "practice": "Cabinet", "hospital": "Établissement",
             "other": "Autre"}
# The fields of each add form: (name, label, required, help).
FORMS: dict[str, list[tuple[str, str, bool, str]]] = {
    "PER": [
        ("email", "Adresse de messagerie", True, "dans un de nos domaines"),
        ("rpps", "RPPS", False, "11 chiffres (clé de Luhn)"),
        ("adeli", "ADELI", False, "9 chiffres, pour les professions sans RPPS"),
        ("title", "Titre", False, "par exemple Dr"),
        ("given_name", "Prénom", True, ""),
        ("family_name", "Nom", True, ""),
        ("profession", "Profession", True, "code TRE_G15 : 10 médecin, 21 pharmacien..."),
        ("specialty", "Spécialité", False, "code TRE_R38, par exemple SM26"),
        ("savoir_faire", "Autres savoir-faire", False,
         "codes JDV_J107 séparés par des virgules : C35 (cancérologie), CAPA06..."),
        ("structure", "Structure", False, "adresse de la boîte de la structure"),
        ("phone", "Téléphone", False, ""),
        ("display_name", "Nom affiché", False, "par défaut : titre, prénom, nom"),
    ],
    "ORG": [
        ("email", "Adresse de messagerie", True, ""),
        ("finess", "FINESS", False, "9 caractères"),
        ("siret", "SIRET", False, "14 chiffres"),
        ("name", "Nom", True, ""),
        ("kind", "Type", True, "pharmacy, practice, hospital ou other"),
        ("address", "Adresse postale", False, ""),
        ("phone", "Téléphone", False, ""),
        ("display_name", "Nom affiché", False, "par défaut : le nom"),
    ],
    "PATIENT": [
        ("ins", "INS (NIR)", True, "15 caractères avec la clé"),
        ("birth_name", "Nom de naissance", True, ""),
        ("given_names", "Prénoms de naissance", True, ""),
        ("sex", "Sexe", True, "F ou M"),
        ("birth_date", "Date de naissance", True, "AAAA-MM-JJ"),
        ("birth_place", "Lieu de naissance", True, "code INSEE de la commune"),
    ],
    "APP": [
        ("email", "Adresse de messagerie", True, ""),
        ("name", "Nom", True, ""),
    ],
}


# The fields of each edit form: the add form's, less what names the mailbox (its address; a
# patient's INS, which is their address), plus the display name where the add form has none.
EDIT_FORMS: dict[str, list[tuple[str, str, bool, str]]] = {
    kind: [f for f in fields if f[0] not in ("email", "ins")]
    + ([] if any(f[0] == "display_name" for f in fields)
       else [("display_name", "Nom affiché", False, "")])
    for kind, fields in FORMS.items()
}


def _field_key(field: str | None) -> str | None:
    return field.replace("-", "_") if field else None


def _when(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone()
        return value.strftime("%d/%m/%Y %H:%M")
    if isinstance(value, dt.date):
        return value.strftime("%d/%m/%Y")
    return str(value)


templates.env.filters["quand"] = _when
templates.env.filters["pair"] = lambda value: (value, value)


class Ctx:
    """One console request: its caller, session and services."""

    def __init__(self, request: Request, caller: Caller, session: Session) -> None:
        self.request = request
        self.caller = caller
        self.session = session
        self.services = Services(config_of(request), caller, accounts_of(request))


def render(request: Request, template: str, ctx: Ctx | None, status: int = 200,
           **values: Any) -> HTMLResponse:
    done = request.query_params.get("fait")
    values.setdefault("errors", {})
    values.setdefault("form", {})
    return templates.TemplateResponse(
        request, template,
        {
            "caller": ctx.caller if ctx else None,
            "csrf": ctx.session.csrf if ctx else "",
            "done": DONE.get(done or ""),
            "path": request.url.path,
            **values,
        },
        status_code=status,
    )


def error_page(request: Request, exc: GatewayError) -> Response:
    if isinstance(exc, Unauthenticated) and request.method == "GET":
        return RedirectResponse(f"{PREFIX}/login", status_code=303)
    try:
        caller, session = console_caller(request)
        ctx: Ctx | None = Ctx(request, caller, session)
    except (NotLoggedIn, GatewayError):
        ctx = None
    return render(request, "error.html", ctx, status=errors.status_of(exc), message=say(exc))


def _redirect(url: str, done: str | None = None) -> RedirectResponse:
    if done:
        url += ("&" if "?" in url else "?") + urlencode({"fait": done})
    return RedirectResponse(url, status_code=303)


async def _page(request: Request, run: Callable[[Ctx], Response]) -> Response:
    """A GET page: needs a session; `run` (blocking storage work) runs in a thread."""
    caller, session = console_caller(request)
    ctx = Ctx(request, caller, session)
    try:
        return await run_in_threadpool(run, ctx)
    finally:
        ctx.services.close()


async def _post(request: Request, run: Callable[[Ctx, dict[str, Any]], Response]) -> Response:
    """A form POST: needs a session and its CSRF token."""
    caller, session = console_caller(request)
    form = await request.form()
    check_csrf(session.csrf, str(form.get("csrf") or ""))
    data: dict[str, Any] = {}
    for key, value in form.multi_items():
        if key == "csrf":
            continue
        data[key] = value if isinstance(value, UploadFile) else str(value)
    ctx = Ctx(request, caller, session)
    try:
        return await run_in_threadpool(run, ctx, data)
    finally:
        ctx.services.close()
        await form.close()


def _pages(request: Request, page: Page[Any]) -> dict[str, Any]:
    """Previous/next links keeping the search; the total when it was counted."""
    params = dict(request.query_params)
    params.pop("fait", None)
    offset = page.offset
    out: dict[str, Any] = {"total": page.total, "first": offset + 1 if page.items else 0,
                           "last": offset + len(page.items) if page.items else 0}
    number = offset // PAGE_SIZE + 1
    if offset > 0:
        out["prev"] = "?" + urlencode({**params, "page": number - 1})
    if page.has_next:
        out["next"] = "?" + urlencode({**params, "page": number + 1})
    return out


def _offset(request: Request) -> int:
    raw = request.query_params.get("page", "1")
    page = int(raw) if raw.isdigit() and 0 < int(raw) < 100000 else 1
    return (page - 1) * PAGE_SIZE


def _q(request: Request, name: str) -> str:
    return request.query_params.get(name, "").strip()


# --- login -----------------------------------------------------------------------------------


def _set_session(response: Response, secret: str, request: Request) -> None:
    config = config_of(request)
    response.set_cookie(
        SESSION_COOKIE, secret, max_age=config.admin.session_max, path="/", secure=True,
        httponly=True, samesite="strict",
    )


def _login_form(request: Request, message: str | None = None, status: int = 200) -> Response:
    import secrets

    token = secrets.token_urlsafe(32)
    cert = client_certificate(request)
    cert_admin = accounts_of(request).by_certificate(cert) if cert is not None else None
    response = render(request, "login.html", None, status=status, login_csrf=token,
                      message=message, certificate_login=cert_admin is not None)
    response.set_cookie(LOGIN_COOKIE, token, max_age=3600, path="/", secure=True,
                        httponly=True, samesite="strict")
    return response


@router.get("/login")
async def login_page(request: Request) -> Response:
    return _login_form(request)


async def _login_checked(request: Request) -> dict[str, str]:
    form = await request.form()
    data = {k: str(v) for k, v in form.items()}
    try:
        check_csrf(request.cookies.get(LOGIN_COOKIE, ""), data.get("csrf"))
    except Unauthenticated:
        raise Unauthenticated("csrf: the login form expired; try again") from None
    return data


def _logged_in(request: Request, admin: Any) -> Response:
    session = accounts_of(request).start_session(admin)
    response = _redirect(f"{PREFIX}/")
    _set_session(response, session.secret, request)
    response.delete_cookie(LOGIN_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    try:
        data = await _login_checked(request)
        admin = await run_in_threadpool(
            accounts_of(request).login, data.get("name", ""), data.get("password", ""),
            data.get("code", ""), client=client_address(request),
        )
    except Unauthenticated as exc:
        return _login_form(request, say(exc), status=401)
    return _logged_in(request, admin)


@router.post("/login/certificate")
async def login_certificate(request: Request) -> Response:
    try:
        await _login_checked(request)
        cert = client_certificate(request)
        if cert is None:
            raise Unauthenticated("login: no valid client certificate was presented")
        admin = await run_in_threadpool(accounts_of(request).login_certificate, cert,
                                        client=client_address(request))
    except Unauthenticated as exc:
        return _login_form(request, say(exc), status=401)
    return _logged_in(request, admin)


@router.get("/login/link")
async def login_link_page(request: Request) -> Response:
    # A GET never logs in (link previews and prefetchers would use the link up): the page asks
    # for one click, which POSTs the code.
    import secrets

    token = secrets.token_urlsafe(32)
    response = render(request, "login_link.html", None, login_csrf=token,
                      code=request.query_params.get("code", ""))
    response.set_cookie(LOGIN_COOKIE, token, max_age=3600, path="/", secure=True,
                        httponly=True, samesite="strict")
    return response


@router.post("/login/link")
async def login_link(request: Request) -> Response:
    try:
        data = await _login_checked(request)
        admin = await run_in_threadpool(accounts_of(request).use_login_link,
                                        data.get("code", ""), client=client_address(request))
    except Unauthenticated as exc:
        return _login_form(request, say(exc), status=401)
    return _logged_in(request, admin)


@router.post("/logout")
async def logout(request: Request) -> Response:
    caller, session = console_caller(request)
    form = await request.form()
    check_csrf(session.csrf, str(form.get("csrf") or ""))
    await run_in_threadpool(accounts_of(request).end_session,
                            request.cookies.get(SESSION_COOKIE, ""), caller.name)
    response = _redirect(f"{PREFIX}/login")
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True,
                           samesite="strict")
    return response


# --- dashboard -------------------------------------------------------------------------------


@router.get("/")
async def dashboard(request: Request) -> Response:
    return await _page(request, lambda c: render(
        request, "dashboard.html", c, status_info=c.services.status.status()))


# --- mailboxes -------------------------------------------------------------------------------


@router.get("/mailboxes")
async def mailboxes(request: Request) -> Response:
    def run(c: Ctx) -> Response:
        kind, state = _q(request, "kind"), _q(request, "etat")
        page = c.services.mailboxes.page(search=_q(request, "q"), kind=kind or None,
                                         state=state or None, offset=_offset(request),
                                         limit=PAGE_SIZE)
        return render(request, "mailboxes.html", c, page=page, kinds=MAILBOX_KINDS,
                      pages=_pages(request, page), q=_q(request, "q"),
                      kind=kind, etat=state)
    return await _page(request, run)


def _mailbox_form(request: Request, c: Ctx, kind: str, form: dict[str, Any],
                  errors_: dict[str, str], status: int = 200) -> Response:
    # A choice list while there are few structures; past that, the address is typed.
    structures = c.services.mailboxes.structures() if kind == "PER" else None
    options = [("", "—")] + [(m.address, f"{m.display_name} ({m.address})")
                             for m in structures] if structures else []
    return render(request, "mailbox_new.html", c, status=status, kind=kind,
                  kind_label=MAILBOX_KINDS[kind], fields=FORMS[kind], form=form,
                  errors=errors_, structure_options=options, org_kinds=ORG_KINDS)


@router.get("/mailboxes/new")
async def mailbox_new(request: Request) -> Response:
    kind = _q(request, "type").upper() or "PER"
    if kind not in FORMS:
        kind = "PER"
    return await _page(request, lambda c: _mailbox_form(request, c, kind, {}, {}))


@router.post("/mailboxes/new")
async def mailbox_add(request: Request) -> Response:
    def run(c: Ctx, data: dict[str, Any]) -> Response:
        kind = str(data.pop("type", "PER")).upper()
        if kind not in FORMS:
            kind = "PER"
        values = {name: data.get(name, "") for name, _, _, _ in FORMS[kind]}
        adders: dict[str, Callable[..., Any]] = {
                  "PER": c.services.mailboxes.add_professional,
                  "ORG": c.services.mailboxes.add_organisation,
                  "PATIENT": c.services.mailboxes.add_patient,
                  "APP": c.services.mailboxes.add_application}
        try:
            if kind == "PATIENT":
                m = adders[kind](**values,
                                 objects_to_prescriber_feedback=bool(data.get("objection")))
            else:
                m = adders[kind](**values)
        except GatewayError as exc:
            key = _field_key(errors.field_of(exc)) or "_"
            if key not in values:
                key = "_"
            return _mailbox_form(request, c, kind, values, {key: say(exc)},
                                 status=errors.status_of(exc))
        return _redirect(f"{PREFIX}/mailboxes/{m.address}", "added")
    return await _post(request, run)


@router.get("/mailboxes/{address}")
async def mailbox_show(request: Request, address: str) -> Response:
    def run(c: Ctx) -> Response:
        m = c.services.mailboxes.show(address)
        certs = c.services.pki.list_all(email=m.address) if c.caller.allows("pki") else []
        return render(request, "mailbox.html", c, m=m, kinds=MAILBOX_KINDS, certs=certs,
                      now=dt.datetime.now(dt.UTC))
    return await _page(request, run)


def current_values(m: Any) -> dict[str, str]:
    """What the edit form shows for a mailbox: its fields as text."""
    identity = m.professional or m.organisation or m.patient or m.application
    values: dict[str, str] = {"display_name": m.display_name}
    for name, value in vars(identity).items():
        if value is None:
            values[name] = ""
        elif isinstance(value, tuple):
            values[name] = ", ".join(value)
        elif isinstance(value, bool):
            values[name] = "1" if value else ""
        else:
            values[name] = str(getattr(value, "value", value))
    return values


def _edit_form(request: Request, c: Ctx, m: Any, form: dict[str, str],
               errors_: dict[str, str], status: int = 200) -> Response:
    kind = m.kind.value
    structures = c.services.mailboxes.structures() if kind == "PER" else None
    options = [("", "—")] + [(s.address, f"{s.display_name} ({s.address})")
                             for s in structures] if structures else []
    return render(request, "mailbox_edit.html", c, status=status, m=m, kind=kind,
                  kind_label=MAILBOX_KINDS[kind], fields=EDIT_FORMS[kind], form=form,
                  errors=errors_, structure_options=options, org_kinds=ORG_KINDS)


@router.get("/mailboxes/{address}/edit")
async def mailbox_edit(request: Request, address: str) -> Response:
    def run(c: Ctx) -> Response:
        c.caller.require("mailboxes", write=True)
        m = c.services.mailboxes.show(address)
        return _edit_form(request, c, m, current_values(m), {})
    return await _page(request, run)


@router.post("/mailboxes/{address}/edit")
async def mailbox_update(request: Request, address: str) -> Response:
    """The fields changed (as the API's PATCH: only those sent, "" clears an optional one),
    through the same service, refused with the same message next to the field."""
    def run(c: Ctx, data: dict[str, Any]) -> Response:
        svc = c.services.mailboxes
        m = svc.show(address)
        before = current_values(m)
        fields = [name for name, _, _, _ in EDIT_FORMS[m.kind.value]]
        form = {name: " ".join(str(data.get(name, "")).split()) if name != "address"
                else str(data.get(name, "")).strip() for name in fields}
        if m.kind.value == "PATIENT":
            form["objects_to_prescriber_feedback"] = "1" if data.get("objection") else ""
            fields.append("objects_to_prescriber_feedback")
        changes: dict[str, Any] = {
            name: form[name] for name in fields if form[name] != before.get(name, "")}
        if "objects_to_prescriber_feedback" in changes:
            changes["objects_to_prescriber_feedback"] = bool(form["objects_to_prescriber_feedback"])
        if not changes:
            return _redirect(f"{PREFIX}/mailboxes/{m.address}", "unchanged")
        try:
            svc.update(m.address, changes)
        except GatewayError as exc:
            key = _field_key(errors.field_of(exc)) or "_"
            return _edit_form(request, c, m, form, {key if key in form else "_": say(exc)},
                              status=errors.status_of(exc))
        return _redirect(f"{PREFIX}/mailboxes/{m.address}", "updated")
    return await _post(request, run)


def _mailbox_action(action: str) -> Callable[[Request, str], Any]:
    async def handler(request: Request, address: str) -> Response:
        def run(c: Ctx, data: dict[str, Any]) -> Response:
            svc = c.services.mailboxes
            if action == "suspend":
                svc.suspend(address)
                return _redirect(f"{PREFIX}/mailboxes/{address}", "suspended")
            if action == "resume":
                svc.resume(address)
                return _redirect(f"{PREFIX}/mailboxes/{address}", "resumed")
            if action == "delete":
                svc.delete(address)
                return _redirect(f"{PREFIX}/mailboxes", "deleted")
            try:
                svc.set_password(address, str(data.get("password", "")))
            except GatewayError as exc:
                m = svc.directory.require(address)
                return render(request, "mailbox.html", c, status=errors.status_of(exc), m=m,
                              kinds=MAILBOX_KINDS, certs=[], now=dt.datetime.now(dt.UTC),
                              errors={"password": say(exc)})
            return _redirect(f"{PREFIX}/mailboxes/{address}", "password")
        return await _post(request, run)
    return handler


for _action in ("suspend", "resume", "delete", "password"):
    router.add_api_route(f"/mailboxes/{{address}}/{_action}", _mailbox_action(_action),
                         methods=["POST"])


# --- trust domains ---------------------------------------------------------------------------


def _trust_page(request: Request, c: Ctx, status: int = 200, **values: Any) -> Response:
    scope = _q(request, "portee")
    ours = None if scope not in ("own", "peers") else scope == "own"
    page = c.services.trust.page(search=_q(request, "q"), ours=ours, offset=_offset(request),
                                 limit=PAGE_SIZE)
    return render(request, "trust.html", c, status=status, page=page,
                  pages=_pages(request, page), q=_q(request, "q"),
                  portee=scope, generated=c.services.trust.whitelist_generated(), **values)


@router.get("/trust")
async def trust(request: Request) -> Response:
    return await _page(request, lambda c: _trust_page(request, c))


@router.post("/trust/add")
async def trust_add(request: Request) -> Response:
    def run(c: Ctx, data: dict[str, Any]) -> Response:
        form = {k: str(data.get(k, "")) for k in ("name", "dn", "description")}
        try:
            c.services.trust.add(form["name"], form["dn"].splitlines(),
                                 ours=bool(data.get("own")), description=form["description"])
        except GatewayError as exc:
            key = _field_key(errors.field_of(exc)) or "_"
            key = {"domain": "name"}.get(key, key)
            return _trust_page(request, c, status=errors.status_of(exc), form=form,
                               errors={key if key in form else "_": say(exc)})
        return _redirect(f"{PREFIX}/trust", "domain-added")
    return await _post(request, run)


@router.post("/trust/import")
async def trust_import(request: Request) -> Response:
    from gateway.directory.admin import whitelist_report
    from gateway.web.api import WHITELIST_MAX

    def run(c: Ctx, data: dict[str, Any]) -> Response:
        upload = data.get("file")
        if not isinstance(upload, UploadFile) or not upload.filename:
            return _trust_page(request, c, status=422, errors={
                "file": "Fichier : choisissez le fichier XML de la liste blanche"})
        try:
            from gateway.web.api import with_upload

            change = with_upload(upload, WHITELIST_MAX, lambda p: c.services.trust.import_whitelist(
                p, allow_older=bool(data.get("allow_older")),
                allow_removals=bool(data.get("allow_removals"))))
        except GatewayError as exc:
            return _trust_page(request, c, status=errors.status_of(exc),
                               errors={"file": say(exc)})
        return _trust_page(request, c, report=[
            french(line) or line for line in whitelist_report(change, upload.filename)])
    return await _post(request, run)


@router.post("/trust/{name}/remove")
async def trust_remove(request: Request, name: str) -> Response:
    def run(c: Ctx, data: dict[str, Any]) -> Response:
        c.services.trust.remove(name)
        return _redirect(f"{PREFIX}/trust", "domain-removed")
    return await _post(request, run)


# --- certificates ----------------------------------------------------------------------------


def _certs_page(request: Request, c: Ctx, status: int = 200, **values: Any) -> Response:
    from gateway.pki.ca import REASONS
    from gateway.pki.kinds import KINDS

    page = c.services.pki.page(search=_q(request, "q"), status=_q(request, "etat") or None,
                               offset=_offset(request), limit=PAGE_SIZE)
    return render(request, "certificates.html", c, status=status, page=page,
                  pages=_pages(request, page), q=_q(request, "q"),
                  etat=_q(request, "etat"), kind_options=[(k, k) for k in KINDS],
                  reasons=list(REASONS),
                  now=dt.datetime.now(dt.UTC), **values)


@router.get("/certificates")
async def certificates(request: Request) -> Response:
    return await _page(request, lambda c: _certs_page(request, c))


@router.post("/certificates/issue")
async def certificate_issue(request: Request) -> Response:
    def run(c: Ctx, data: dict[str, Any]) -> Response:
        form = {k: str(data.get(k, "")) for k in ("subject", "kind", "name", "days")}
        try:
            days = form["days"].strip()
            if days and not days.isdigit():
                from gateway.directory.validate import InvalidField

                raise InvalidField("days", days, "a number of days")
            c.services.pki.issue(form["subject"], form["kind"], name=form["name"] or None,
                                 days=int(days) if days else None)
        except GatewayError as exc:
            key = _field_key(errors.field_of(exc)) or "_"
            return _certs_page(request, c, status=errors.status_of(exc), form=form,
                               errors={key if key in form else "subject": say(exc)})
        return _redirect(f"{PREFIX}/certificates", "issued")
    return await _post(request, run)


@router.post("/certificates/{serial}/revoke")
async def certificate_revoke(request: Request, serial: str) -> Response:
    def run(c: Ctx, data: dict[str, Any]) -> Response:
        c.services.pki.revoke(serial, str(data.get("reason") or "unspecified"))
        return _redirect(f"{PREFIX}/certificates", "revoked")
    return await _post(request, run)


# --- prescriptions ---------------------------------------------------------------------------


@router.get("/prescriptions")
async def prescriptions(request: Request) -> Response:
    from gateway.prescriptions.registry import Status

    def run(c: Ctx) -> Response:
        patient, prescriber, status = _q(request, "patient"), _q(request, "prescripteur"), \
            _q(request, "etat")
        page = c.services.prescriptions.page(
            patient=patient or None, prescriber=prescriber or None, status=status or None,
            offset=_offset(request), limit=PAGE_SIZE,
        )
        return render(request, "prescriptions.html", c, page=page,
                      pages=_pages(request, page), patient=patient,
                      prescripteur=prescriber, etat=status, statuses=[s.value for s in Status])
    return await _page(request, run)


@router.get("/prescriptions/{identifier}")
async def prescription(request: Request, identifier: str) -> Response:
    return await _page(request, lambda c: render(
        request, "prescription.html", c, rec=c.services.prescriptions.show(identifier)))


@router.post("/prescriptions/{identifier}/cancel")
async def prescription_cancel(request: Request, identifier: str) -> Response:
    def run(c: Ctx, data: dict[str, Any]) -> Response:
        try:
            c.services.prescriptions.cancel(identifier, by=str(data.get("by", "")),
                                            reason=str(data.get("reason", "")))
        except GatewayError as exc:
            return render(request, "prescription.html", c, status=errors.status_of(exc),
                          rec=c.services.prescriptions.show(identifier),
                          errors={"by": say(exc)}, form=data)
        return _redirect(f"{PREFIX}/prescriptions/{identifier}", "cancelled")
    return await _post(request, run)


# --- DMP -------------------------------------------------------------------------------------


@router.get("/dmp")
async def dmp(request: Request) -> Response:
    def run(c: Ctx) -> Response:
        patient = _q(request, "patient")
        if not patient:
            return render(request, "dmp.html", c, patient="", etat=_q(request, "etat"))
        page = c.services.dmp.page(patient, status=_q(request, "etat") or None,
                                   offset=_offset(request), limit=PAGE_SIZE)
        return render(request, "dmp.html", c, patient=patient, page=page,
                      pages=_pages(request, page), etat=_q(request, "etat"))
    return await _page(request, run)


@router.get("/dmp/{unique_id}")
async def dmp_document(request: Request, unique_id: str) -> Response:
    return await _page(request, lambda c: render(
        request, "dmp_document.html", c, entry=c.services.dmp.show(unique_id).as_dict()))


@router.get("/dmp/{unique_id}/contenu")
async def dmp_content(request: Request, unique_id: str) -> Response:
    def run(c: Ctx) -> Response:
        doc = c.services.dmp.get(unique_id)
        return Response(doc.content, media_type="application/octet-stream", headers={
            "Content-Disposition": f'attachment; filename="{unique_id}.xml"'})
    return await _page(request, run)


# --- audit -----------------------------------------------------------------------------------


@router.get("/audit")
async def audit(request: Request) -> Response:
    def run(c: Ctx) -> Response:
        filters = {"action": _q(request, "action"), "actor": _q(request, "acteur"),
                   "target": _q(request, "cible"), "search": _q(request, "q"),
                   "since": _q(request, "depuis")}
        page = c.services.audit.page(**{k: v or None for k, v in filters.items()},
                                     offset=_offset(request), limit=PAGE_SIZE)
        return render(request, "audit.html", c, page=page, f=filters,
                      pages=_pages(request, page))
    return await _page(request, run)


# --- queue -----------------------------------------------------------------------------------


@router.get("/queue")
async def queue(request: Request) -> Response:
    from gateway.store.admin import summary

    def run(c: Ctx) -> Response:
        page = c.services.queue.page(offset=_offset(request), limit=PAGE_SIZE)
        return render(request, "queue.html", c, items=[summary(r) for r in page.items],
                      pages=_pages(request, page))
    return await _page(request, run)


@router.get("/queue/{queue_id}")
async def queued(request: Request, queue_id: str) -> Response:
    from gateway.store.admin import summary

    def run(c: Ctx) -> Response:
        record, header = c.services.queue.show(queue_id)
        return render(request, "queued.html", c, q=summary(record),
                      header=header.decode("utf-8", "replace"))
    return await _page(request, run)


@router.post("/queue/{queue_id}/{action}")
async def queue_action(request: Request, queue_id: str, action: str) -> Response:
    def run(c: Ctx, data: dict[str, Any]) -> Response:
        svc = c.services.queue
        if action == "retry":
            svc.retry(queue_id)
            return _redirect(f"{PREFIX}/queue", "retry")
        if action == "bounce":
            svc.bounce(queue_id)
            return _redirect(f"{PREFIX}/queue", "bounced")
        if action == "delete":
            svc.delete(queue_id)
            return _redirect(f"{PREFIX}/queue", "queue-deleted")
        from gateway.errors import NotFound

        raise NotFound("page: no such page in the console")
    return await _post(request, run)


# --- API tokens ------------------------------------------------------------------------------


def _tokens_page(request: Request, c: Ctx, status: int = 200, **values: Any) -> Response:
    from gateway.admins.model import SCOPE_CHOICES

    now = dt.datetime.now(dt.UTC)
    admin = None if c.caller.can_write else c.caller.name
    return render(request, "tokens.html", c, status=status, now=now,
                  tokens=c.services.accounts.tokens(admin),
                  admins=c.services.accounts.accounts(), scopes=SCOPE_CHOICES, **values)


@router.get("/tokens")
async def tokens(request: Request) -> Response:
    return await _page(request, lambda c: _tokens_page(request, c))


@router.post("/tokens/new")
async def token_new(request: Request) -> Response:
    def run(c: Ctx, data: dict[str, Any]) -> Response:
        form = {k: str(data.get(k, "")) for k in ("admin", "label", "scopes", "days")}
        try:
            days = form["days"].strip()
            token, secret = c.services.accounts.create_token(
                c.caller, form["admin"] or c.caller.name, form["label"],
                form["scopes"].split(), days=int(days) if days.isdigit() else None,
            )
        except GatewayError as exc:
            key = _field_key(errors.field_of(exc)) or "_"
            key = {"scope": "scopes", "name": "admin"}.get(key, key)
            return _tokens_page(request, c, status=errors.status_of(exc), form=form,
                                errors={key if key in form else "_": say(exc)})
        return _tokens_page(request, c, created=token, secret=secret)
    return await _post(request, run)


@router.post("/tokens/{token_id}/revoke")
async def token_revoke(request: Request, token_id: str) -> Response:
    def run(c: Ctx, data: dict[str, Any]) -> Response:
        c.services.accounts.revoke_token(c.caller, token_id)
        return _redirect(f"{PREFIX}/tokens", "token-revoked")
    return await _post(request, run)


# --- wiring ----------------------------------------------------------------------------------


def register(app: FastAPI) -> None:
    app.include_router(router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=str(HERE / "static")),
              name="console-static")

    @app.get(PREFIX, include_in_schema=False)
    async def console_root() -> Response:
        return RedirectResponse(f"{PREFIX}/", status_code=308)

    @app.exception_handler(NotLoggedIn)
    async def not_logged_in(request: Request, exc: NotLoggedIn) -> Response:
        return RedirectResponse(f"{PREFIX}/login", status_code=303)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        path = request.url.path
        if path.startswith(PREFIX):
            for key, value in SECURITY_HEADERS.items():
                response.headers.setdefault(key, value)
        elif path.startswith("/api/"):
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            response.headers.setdefault("Cache-Control", "no-store")
        return response
