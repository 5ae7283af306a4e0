"""The REST API: `/api/v1/...`, JSON, for operators' scripts and portals.

Every resource calls the application service the CLI calls, as the authenticated caller (API
token or client certificate, auth.py); refusals are the CLI's one-line messages with the field
they name and an HTTP status (errors.py). Lists take `offset` and `limit` (at most 500) and
answer `{"items": [...], "total": N, "offset": O, "limit": L, "has_more": bool}` (the audit
log's word search answers `"total": null`: it stops reading at a full page). The OpenAPI
document of this API alone is `/api/v1/openapi.json` (public, like any API description; every
resource in it needs credentials).
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, File, Form, Query, UploadFile
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile as AnyUpload

from gateway import __version__
from gateway.admins.paging import Page
from gateway.audit import entry_dict
from gateway.directory.admin import domain_dict, mailbox_dict, whitelist_report
from gateway.errors import GatewayError
from gateway.store.admin import summary
from gateway.texts import t
from gateway.web.auth import ApiServices

PREFIX = "/api/v1"
router = APIRouter(prefix=PREFIX)
Offset = Annotated[int | None, Query(ge=0, description="first item (0-based)")]
Limit = Annotated[int | None, Query(ge=1, le=500, description="items per page (default 50)")]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown key is a mistake: say it


def page_of(page: Page[Any], convert: Any) -> dict[str, Any]:
    return {"items": [convert(x) for x in page.items], "total": page.total,
            "offset": page.offset, "limit": page.limit, "has_more": page.has_next}


# --- status ----------------------------------------------------------------------------------


@router.get("/status", tags=["status"], summary="The gateway at a glance (the dashboard)")
def get_status(s: ApiServices) -> dict[str, Any]:
    return s.status.status()


@router.get("/me", tags=["status"], summary="Who the credentials act as")
def get_me(s: ApiServices) -> dict[str, Any]:
    c = s.caller
    return {"name": c.name, "role": c.role.value, "actor": c.actor,
            "scopes": list(c.scopes) if c.scopes is not None else None}


# --- mailboxes -------------------------------------------------------------------------------


class ProfessionalIn(Body):
    email: str
    rpps: str | None = None
    adeli: str | None = None
    family_name: str | None = None
    given_name: str | None = None
    profession: str | None = Field(None, description="TRE_G15: 10 médecin, 21 pharmacien...")
    specialty: str | None = Field(None, description="TRE_R38, e.g. SM26")
    savoir_faire: str | None = Field(
        None, description="JDV_J107 codes beyond the specialty, comma-separated: C35,CAPA06")
    structure: str | None = Field(None, description="address of the ORG mailbox")
    title: str | None = None
    phone: str | None = None
    display_name: str | None = None


class OrganisationIn(Body):
    email: str
    finess: str | None = None
    siret: str | None = None
    name: str | None = None
    kind: str | None = Field(None, description="pharmacy, practice, hospital or other")
    address: str | None = None
    phone: str | None = None
    display_name: str | None = None


class PatientIn(Body):
    ins: str
    birth_name: str | None = None
    given_names: str | None = None
    sex: str | None = Field(None, description="F or M")
    birth_date: str | None = Field(None, description="YYYY-MM-DD")
    birth_place: str | None = Field(None, description="INSEE code of the birth commune")
    objects_to_prescriber_feedback: bool = False


class ApplicationIn(Body):
    email: str
    name: str | None = None


class MailboxChange(Body):
    display_name: str | None = None
    rpps: str | None = None
    adeli: str | None = None
    family_name: str | None = None
    given_name: str | None = None
    profession: str | None = None
    specialty: str | None = None
    savoir_faire: str | None = None
    structure: str | None = None
    title: str | None = None
    finess: str | None = None
    siret: str | None = None
    name: str | None = None
    kind: str | None = None
    address: str | None = None
    phone: str | None = None
    birth_name: str | None = None
    given_names: str | None = None
    sex: str | None = None
    birth_date: str | None = None
    birth_place: str | None = None
    objects_to_prescriber_feedback: bool | None = None


class PasswordIn(Body):
    password: str


@router.get("/mailboxes", tags=["mailboxes"], summary="List mailboxes (patients: audited read)")
def list_mailboxes(
    s: ApiServices, kind: str | None = None, domain: str | None = None,
    search: str | None = None, state: str | None = None, offset: Offset = None,
    limit: Limit = None,
) -> dict[str, Any]:
    page = s.mailboxes.page(kind=kind, domain=domain, search=search, state=state,
                            offset=offset, limit=limit)
    return page_of(page, mailbox_dict)


def _created(data: dict[str, Any]) -> JSONResponse:
    return JSONResponse(data, status_code=201)


@router.post("/mailboxes/professionals", tags=["mailboxes"], status_code=201,
             summary="Add a professional (PER)")
def add_professional(s: ApiServices, body: ProfessionalIn) -> JSONResponse:
    return _created(mailbox_dict(s.mailboxes.add_professional(**body.model_dump())))


@router.post("/mailboxes/organisations", tags=["mailboxes"], status_code=201,
             summary="Add a structure (ORG): pharmacy, practice...")
def add_organisation(s: ApiServices, body: OrganisationIn) -> JSONResponse:
    return _created(mailbox_dict(s.mailboxes.add_organisation(**body.model_dump())))


@router.post("/mailboxes/patients", tags=["mailboxes"], status_code=201,
             summary="Add a patient (address <INS>@patient.<domain>)")
def add_patient(s: ApiServices, body: PatientIn) -> JSONResponse:
    return _created(mailbox_dict(s.mailboxes.add_patient(**body.model_dump())))


@router.post("/mailboxes/applications", tags=["mailboxes"], status_code=201,
             summary="Add a software mailbox (APP)")
def add_application(s: ApiServices, body: ApplicationIn) -> JSONResponse:
    return _created(mailbox_dict(s.mailboxes.add_application(**body.model_dump())))


@router.get("/mailboxes/{address}", tags=["mailboxes"], summary="Show one mailbox")
def show_mailbox(s: ApiServices, address: str) -> dict[str, Any]:
    return mailbox_dict(s.mailboxes.show(address))


@router.patch("/mailboxes/{address}", tags=["mailboxes"],
              summary='Change fields ("" clears an optional one)')
def update_mailbox(s: ApiServices, address: str, body: MailboxChange) -> dict[str, Any]:
    return mailbox_dict(s.mailboxes.update(address, body.model_dump(exclude_unset=True)))


@router.post("/mailboxes/{address}/suspend", tags=["mailboxes"],
             summary="Suspend: no login, no delivery")
def suspend_mailbox(s: ApiServices, address: str) -> dict[str, Any]:
    return mailbox_dict(s.mailboxes.suspend(address))


@router.post("/mailboxes/{address}/resume", tags=["mailboxes"], summary="Make active again")
def resume_mailbox(s: ApiServices, address: str) -> dict[str, Any]:
    return mailbox_dict(s.mailboxes.resume(address))


@router.delete("/mailboxes/{address}", tags=["mailboxes"], summary="Delete a mailbox")
def delete_mailbox(s: ApiServices, address: str) -> dict[str, Any]:
    return {"deleted": s.mailboxes.delete(address)}


@router.put("/mailboxes/{address}/password", tags=["mailboxes"], summary="Set the password")
def set_password(s: ApiServices, address: str, body: PasswordIn) -> dict[str, Any]:
    return {"password_set": s.mailboxes.set_password(address, body.password)}


# --- trust domains ---------------------------------------------------------------------------


class DomainIn(Body):
    name: str
    dns: list[str] = Field(default_factory=list, description="the peer operator's subject DNs")
    own: bool = False
    description: str | None = None


@router.get("/trust/domains", tags=["trust"], summary="List trust-space domains")
def list_domains(
    s: ApiServices, search: str | None = None,
    scope: Annotated[str | None, Query(pattern="^(own|peers)$")] = None,
    offset: Offset = None, limit: Limit = None,
) -> dict[str, Any]:
    ours = None if scope is None else scope == "own"
    page = s.trust.page(search=search, ours=ours, offset=offset, limit=limit)
    out = page_of(page, domain_dict)
    out["whitelist_generated"] = s.trust.whitelist_generated()
    return out


@router.post("/trust/domains", tags=["trust"], status_code=201,
             summary="Add a peer domain with its operator DN (or own: true)")
def add_domain(s: ApiServices, body: DomainIn) -> JSONResponse:
    d = s.trust.add(body.name, body.dns, ours=body.own, description=body.description)
    return _created(domain_dict(d))


@router.get("/trust/domains/{name}", tags=["trust"], summary="Show one domain")
def show_domain(s: ApiServices, name: str) -> dict[str, Any]:
    return domain_dict(s.trust.show(name))


@router.delete("/trust/domains/{name}", tags=["trust"], summary="Remove a domain")
def remove_domain(s: ApiServices, name: str) -> dict[str, Any]:
    return {"removed": s.trust.remove(name)}


def with_upload(upload: AnyUpload, limit: int, run: Any) -> Any:
    """Run `run(path)` on the uploaded file, written under its own name (as the audit log then
    shows it) in a private temporary folder removed afterwards."""
    data = upload.file.read(limit + 1)
    if len(data) > limit:
        raise GatewayError(t("file: over the limit of {limit} bytes", limit=limit))
    name = os.path.basename(upload.filename or "") or "upload"
    name = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:100]
    with tempfile.TemporaryDirectory(prefix="mssgw-upload-") as folder:
        path = os.path.join(folder, name)
        with open(path, "wb") as f:
            f.write(data)
        return run(path)


WHITELIST_MAX = 64 * 1024 * 1024


@router.post("/trust/whitelist", tags=["trust"],
             summary="Import the national whitelist (listeblanchemssante.xml, uploaded)")
def import_whitelist(
    s: ApiServices, file: Annotated[UploadFile, File(description="listeblanchemssante.xml")],
    allow_older: Annotated[bool, Form()] = False,
    allow_removals: Annotated[bool, Form()] = False,
) -> dict[str, Any]:
    change = with_upload(file, WHITELIST_MAX, lambda p: s.trust.import_whitelist(
        p, allow_older=allow_older, allow_removals=allow_removals))
    out = change.as_dict()
    out["report"] = whitelist_report(change, file.filename or "upload")
    return out


# --- certificates ----------------------------------------------------------------------------


class CertificateIn(Body):
    subject: str = Field(description="the mailbox address (kind server: the host name)")
    kind: str = Field(description="server, org-client, org-seal, personal-auth, personal-sign")
    name: str | None = None
    days: int | None = None
    san: list[str] = Field(default_factory=list)
    ip: list[str] = Field(default_factory=list)


class RevokeIn(Body):
    reason: str = "unspecified"


def _cert(r: Any) -> dict[str, Any]:
    data: dict[str, Any] = r.as_json(datetime.now(UTC))
    return data


@router.get("/certificates", tags=["pki"], summary="List issued certificates, newest first")
def list_certificates(
    s: ApiServices, email: str | None = None, kind: str | None = None,
    search: str | None = None, status: str | None = None, offset: Offset = None,
    limit: Limit = None,
) -> dict[str, Any]:
    page = s.pki.page(email=email, kind=kind, search=search, status=status, offset=offset,
                      limit=limit)
    return page_of(page, _cert)


@router.post("/certificates", tags=["pki"], status_code=201,
             summary="Issue a certificate for a mailbox (or a host)")
def issue_certificate(s: ApiServices, body: CertificateIn) -> JSONResponse:
    done = s.pki.issue(body.subject, body.kind, name=body.name, days=body.days, san=body.san,
                       ip=body.ip)
    return _created(_cert(done.record))


@router.get("/certificates/{serial}", tags=["pki"], summary="Show one certificate")
def show_certificate(s: ApiServices, serial: str) -> dict[str, Any]:
    return s.pki.show(serial)


@router.get("/certificates/{serial}/pem", tags=["pki"], response_class=Response,
            summary="The certificate and its CA chain (PEM; never the key)")
def certificate_pem(s: ApiServices, serial: str) -> Response:
    return Response(s.pki.pem(serial), media_type="application/pem-certificate-chain")


@router.post("/certificates/{serial}/revoke", tags=["pki"],
             summary="Revoke, and re-publish the CA's CRL at once")
def revoke_certificate(s: ApiServices, serial: str, body: RevokeIn | None = None
                       ) -> dict[str, Any]:
    return _cert(s.pki.revoke(serial, (body or RevokeIn()).reason))


@router.get("/crls/{ca}", tags=["pki"], response_class=Response,
            summary="The current CRL of one of our CAs (root, servers, persons), PEM")
def get_crl(s: ApiServices, ca: str) -> Response:
    return Response(s.pki.crl(ca), media_type="application/pkix-crl")


@router.post("/crls", tags=["pki"], summary="Re-publish every CRL now")
def publish_crls(s: ApiServices) -> dict[str, Any]:
    return {"published": s.pki.publish_crls()}


# --- prescriptions ---------------------------------------------------------------------------


class CancelIn(Body):
    by: str = Field(description="the prescriber's address: the cancellation is made for them")
    reason: str | None = None


@router.get("/prescriptions", tags=["prescriptions"], summary="List prescriptions (audited)")
def list_prescriptions(
    s: ApiServices, patient: str | None = None, prescriber: str | None = None,
    status: str | None = None, offset: Offset = None, limit: Limit = None,
) -> dict[str, Any]:
    page = s.prescriptions.page(patient=patient, prescriber=prescriber, status=status,
                                offset=offset, limit=limit)
    return page_of(page, lambda r: r.as_dict())


@router.get("/prescriptions/{identifier}", tags=["prescriptions"],
            summary="Show one prescription: lines, remaining, dispensations (audited)")
def show_prescription(s: ApiServices, identifier: str) -> dict[str, Any]:
    data: dict[str, Any] = s.prescriptions.show(identifier).as_dict()
    return data


@router.post("/prescriptions/{identifier}/cancel", tags=["prescriptions"],
             summary="Cancel on the prescriber's behalf")
def cancel_prescription(s: ApiServices, identifier: str, body: CancelIn) -> dict[str, Any]:
    result = s.prescriptions.cancel(identifier, by=body.by, reason=body.reason)
    return {"message": result.message, "applied": result.applied,
            "prescription": result.record.as_dict()}


# --- DMP -------------------------------------------------------------------------------------


@router.get("/dmp/documents", tags=["dmp"], summary="A patient's documents (audited)")
def list_documents(
    s: ApiServices, patient: str | None = None,
    class_code: Annotated[list[str] | None, Query(alias="class")] = None,
    type_code: Annotated[list[str] | None, Query(alias="type")] = None,
    date_from: Annotated[str | None, Query(alias="from")] = None,
    date_to: Annotated[str | None, Query(alias="to")] = None,
    status: str | None = None, offset: Offset = None, limit: Limit = None,
) -> dict[str, Any]:
    page = s.dmp.page(patient, class_codes=class_code or (), type_codes=type_code or (),
                      date_from=date_from, date_to=date_to, status=status, offset=offset,
                      limit=limit)
    return page_of(page, lambda e: e.as_dict())


@router.get("/dmp/documents/{unique_id}", tags=["dmp"],
            summary="A document's metadata (audited)")
def show_document(s: ApiServices, unique_id: str) -> dict[str, Any]:
    data: dict[str, Any] = s.dmp.show(unique_id).as_dict()
    return data


@router.get("/dmp/documents/{unique_id}/content", tags=["dmp"], response_class=Response,
            summary="A document's bytes (audited)")
def get_document(s: ApiServices, unique_id: str) -> Response:
    doc = s.dmp.get(unique_id)
    mime = getattr(doc.entry.metadata, "mime_type", None) or "application/octet-stream"
    return Response(doc.content, media_type=mime,
                    headers={"Content-Disposition": f'attachment; filename="{unique_id}.xml"'})


# --- audit -----------------------------------------------------------------------------------


@router.get("/audit", tags=["audit"], summary="Query the audit log, newest first")
def query_audit(
    s: ApiServices, action: str | None = None, target: str | None = None,
    actor: str | None = None, since: str | None = None, search: str | None = None,
    offset: Offset = None, limit: Limit = None,
) -> dict[str, Any]:
    page = s.audit.page(action=action, target=target, actor=actor, since=since, search=search,
                        offset=offset, limit=limit)
    return page_of(page, entry_dict)


# --- outbound queue --------------------------------------------------------------------------


@router.get("/queue", tags=["queue"], summary="Messages waiting for other operators")
def list_queue(s: ApiServices, offset: Offset = None, limit: Limit = None) -> dict[str, Any]:
    return page_of(s.queue.page(offset=offset, limit=limit), summary)


@router.get("/queue/{queue_id}", tags=["queue"],
            summary="One queued message with its header (audited)")
def show_queued(s: ApiServices, queue_id: str) -> dict[str, Any]:
    record, header = s.queue.show(queue_id)
    out = summary(record)
    out["headers"] = header.decode("utf-8", "replace")
    return out


@router.post("/queue/{queue_id}/retry", tags=["queue"], summary="Retry at the next scan")
def retry_queued(s: ApiServices, queue_id: str) -> dict[str, Any]:
    return {"retry": s.queue.retry(queue_id)}


@router.post("/queue/{queue_id}/bounce", tags=["queue"],
             summary="Return to the sender with a DSN, and remove")
def bounce_queued(s: ApiServices, queue_id: str) -> dict[str, Any]:
    return {"bounced": s.queue.bounce(queue_id)}


@router.delete("/queue/{queue_id}", tags=["queue"], summary="Delete (no DSN is sent)")
def delete_queued(s: ApiServices, queue_id: str) -> dict[str, Any]:
    return {"deleted": s.queue.delete(queue_id)}


# --- API tokens ------------------------------------------------------------------------------


class TokenIn(Body):
    admin: str | None = Field(None, description="the account the token acts as (default: you)")
    label: str
    scopes: list[str] = Field(description="e.g. ['mailboxes:write', '*:read']")
    days: int | None = None


@router.get("/tokens", tags=["tokens"], summary="List API tokens")
def list_tokens(s: ApiServices) -> dict[str, Any]:
    s.caller.require("status")
    now = datetime.now(UTC)
    admin = None if s.caller.can_write else s.caller.name  # an auditor sees their own
    return {"items": [t.as_dict(now) for t in s.accounts.tokens(admin)]}


@router.post("/tokens", tags=["tokens"], status_code=201,
             summary="Create an API token (administrators; the secret is shown once)")
def create_token(s: ApiServices, body: TokenIn) -> JSONResponse:
    if s.caller.scopes is not None:
        from gateway.admins.model import Forbidden

        raise Forbidden("token: an API token cannot create tokens; log in to the console")
    token, secret = s.accounts.create_token(s.caller, body.admin or s.caller.name, body.label,
                                            body.scopes, days=body.days)
    data = token.as_dict(datetime.now(UTC))
    data["token"] = secret
    return _created(data)


@router.delete("/tokens/{token_id}", tags=["tokens"], summary="Revoke an API token")
def revoke_token(s: ApiServices, token_id: str) -> dict[str, Any]:
    return s.accounts.revoke_token(s.caller, token_id).as_dict(datetime.now(UTC))


# --- the document ----------------------------------------------------------------------------


def openapi_document(app: FastAPI) -> dict[str, Any]:
    cached: dict[str, Any] | None = getattr(app.state, "mssgw_api_openapi", None)
    if cached is None:
        cached = get_openapi(
            title="mssgw administration API", version=__version__,
            description=__doc__ or "", routes=router.routes,
        )
        cached.setdefault("components", {})["securitySchemes"] = {
            "token": {"type": "http", "scheme": "bearer",
                      "description": "an API token: `mssgw admin token create`"},
        }
        cached["security"] = [{"token": []}]
        app.state.mssgw_api_openapi = cached
    return cached


def register(app: FastAPI) -> None:
    app.include_router(router)

    @app.get(f"{PREFIX}/openapi.json", include_in_schema=False)
    async def api_openapi() -> JSONResponse:
        return JSONResponse(openapi_document(app))
