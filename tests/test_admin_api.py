"""The REST API through an HTTP client: every resource refuses anonymous callers (walking the
OpenAPI document), and answers with the CLI's rules, messages and HTTP status codes."""

from __future__ import annotations

import html
import re

import httpx
import pytest
from admin_helpers import DOMAIN, RPPS_BAD_KEY, RPPS_OK, whitelist
from admin_server import admin_gateway, client  # noqa: F401 (fixture)

from gateway import audit
from gateway.directory.demo import PATIENT_INS, doctor_address


@pytest.fixture
def api(admin_gateway):  # noqa: F811
    """(admins, client factory): clients of the running `mssgw serve`, each with a token (None:
    anonymous)."""
    admins, base = admin_gateway
    clients: list[httpx.Client] = []

    def make(token: str | None, certificate: object = None, http2: bool = False
             ) -> httpx.Client:
        """A client with a token, or a certificate (an `Issued`: its files), or neither."""
        files = (certificate.cert_path, certificate.key_path) if certificate else None
        c = client(admins, base, token, certificate=files, http2=http2)
        clients.append(c)
        return c

    yield admins, make
    for c in clients:
        c.close()


def test_anonymous_gets_401_on_every_resource_of_the_openapi_document(api):
    admins, client = api
    anonymous = client(None)
    doc = anonymous.get("/api/v1/openapi.json").json()
    assert doc["components"]["securitySchemes"]["token"]["scheme"] == "bearer"
    walked = 0
    for path, methods in doc["paths"].items():
        url = re.sub(r"\{[^}]+\}", "x", path)
        for method in methods:
            r = anonymous.request(method.upper(), url)
            assert r.status_code == 401, (method, path, r.status_code, r.text)
            assert r.headers["www-authenticate"].startswith("Bearer")
            assert r.json()["error"].startswith("authentication:")
            walked += 1
    assert walked >= 30  # every resource of the issue: mailboxes, trust, pki, ..., queue
    forged = client("mssgw_000000000000_" + "A" * 43)
    assert forged.get("/api/v1/status").status_code == 401


def test_mailboxes_with_the_cli_rules_messages_and_status_codes(api, capsys):
    admins, client = api
    c = client(admins.admin_token)
    new = {"email": f"dr.house@{DOMAIN}", "rpps": RPPS_BAD_KEY, "family_name": "House",
           "given_name": "Gregory", "profession": "10"}
    r = c.post("/api/v1/mailboxes/professionals", json=new)
    assert r.status_code == 422 and r.json()["field"] == "rpps"
    # The same one line as the CLI.
    from directory_cli import Cli

    cli = Cli(admins.config.home, capsys)
    err = cli("directory", "add-professional", "--email", new["email"], "--rpps", RPPS_BAD_KEY,
              "--family-name", "House", "--given-name", "Gregory", "--profession", "10").err
    assert err.strip() == f"mssgw: error: {r.json()['error']}"
    assert c.get(f"/api/v1/mailboxes/{new['email']}").status_code == 404  # nothing half-done
    r = c.post("/api/v1/mailboxes/professionals", json={**new, "rpps": RPPS_OK})
    assert r.status_code == 201 and r.json()["professional"]["rpps"] == RPPS_OK
    assert c.post("/api/v1/mailboxes/professionals",
                  json={**new, "rpps": RPPS_OK}).status_code == 409
    r = c.post("/api/v1/mailboxes/professionals", json={**new, "colour": "blue"})
    assert r.status_code == 422 and r.json()["field"] == "colour"
    r = c.post("/api/v1/mailboxes/professionals", content=b"{not json",
               headers={"content-type": "application/json"})
    assert r.status_code == 400
    r = c.post("/api/v1/mailboxes/professionals", json={"email": "x@test.localhost"})
    assert r.status_code == 422 and r.json()["error"].startswith("rpps: give an RPPS number")
    # Search and pages.
    page = c.get("/api/v1/mailboxes", params={"kind": "PER", "limit": 2}).json()
    assert page["total"] == 3 and len(page["items"]) == 2 and page["offset"] == 0
    rest = c.get("/api/v1/mailboxes", params={"kind": "PER", "limit": 2, "offset": 2}).json()
    assert len(rest["items"]) == 1
    assert [m["address"] for m in c.get("/api/v1/mailboxes",
                                        params={"search": "house"}).json()["items"]] == [
        new["email"]]
    assert c.get("/api/v1/mailboxes", params={"limit": 0}).status_code == 422
    # Change, suspend, resume, password, delete.
    r = c.patch(f"/api/v1/mailboxes/{new['email']}", json={"specialty": "SM54"})
    assert r.json()["professional"]["specialty"] == "SM54"
    r = c.patch(f"/api/v1/mailboxes/{new['email']}", json={"birth_name": "X"})
    assert r.status_code == 422 and "does not apply to a PER mailbox" in r.json()["error"]
    assert c.post(f"/api/v1/mailboxes/{new['email']}/suspend").json()["state"] == "suspended"
    assert c.post(f"/api/v1/mailboxes/{new['email']}/suspend").status_code == 409
    assert c.post(f"/api/v1/mailboxes/{new['email']}/resume").json()["state"] == "active"
    r = c.put(f"/api/v1/mailboxes/{new['email']}/password", json={"password": "short"})
    assert r.status_code == 422 and r.json()["field"] == "password"
    assert c.put(f"/api/v1/mailboxes/{new['email']}/password",
                 json={"password": "a long passphrase"}).status_code == 200
    assert c.delete(f"/api/v1/mailboxes/{new['email']}").json() == {"deleted": new["email"]}
    actions = [e.action for e in audit.read(admins.config, target=new["email"])]
    assert actions == ["directory.add", "directory.update", "directory.suspend",
                       "directory.resume", "directory.set-password", "directory.delete"]
    assert {e.actor for e in audit.read(admins.config, target=new["email"])} == {
        f"admin:alice (token {admins.admin_token.split('_')[1]})"}


def test_roles_scopes_and_patient_reads_audited(api):
    admins, client = api
    auditor, narrow = client(admins.auditor_token), client(admins.mailboxes_read_token)
    patient = f"{PATIENT_INS}@patient.{DOMAIN}"
    assert auditor.get(f"/api/v1/mailboxes/{patient}").status_code == 200
    (read,) = audit.read(admins.config, action="directory.show")
    assert read.actor.startswith("admin:eve (token ") and read.target == patient
    r = auditor.post(f"/api/v1/mailboxes/{doctor_address(DOMAIN)}/suspend")
    assert r.status_code == 403 and "auditor" in r.json()["error"]
    assert narrow.get("/api/v1/mailboxes").status_code == 200
    r = narrow.get("/api/v1/audit")
    assert r.status_code == 403 and r.json()["error"] == (
        "scope: this token does not grant audit:read")
    assert narrow.post("/api/v1/mailboxes/applications",
                       json={"email": f"x@{DOMAIN}", "name": "X"}).status_code == 403
    # Revoked: 401 at once.
    admin = client(admins.admin_token)
    token_id = admins.auditor_token.split("_")[1]
    assert admin.delete(f"/api/v1/tokens/{token_id}").json()["state"] == "revoked"
    assert auditor.get("/api/v1/status").status_code == 401


def test_trust_pki_queue_audit_and_status(api):
    admins, client = api
    c = client(admins.admin_token)
    peer = ("peer.mssante.fr", "CN=mx.peer.example,O=Peer,C=FR")
    r = c.post("/api/v1/trust/whitelist",
               files={"file": ("listeblanchemssante.xml", whitelist([peer]), "text/xml")})
    assert r.status_code == 200, r.text
    assert r.json()["added"] == ["peer.mssante.fr"]
    assert "added 1, removed 0, changed 0 (operator certificate DN)" in r.json()["report"]
    r = c.post("/api/v1/trust/whitelist",
               files={"file": ("x.xml", b"<!DOCTYPE x []><x/>", "text/xml")})
    assert r.status_code == 400 and "DOCTYPE" in r.json()["error"]
    assert c.get("/api/v1/trust/domains", params={"scope": "peers"}).json()["total"] == 1
    assert c.post("/api/v1/trust/domains", json={"name": "bad name"}).status_code == 422
    assert c.delete("/api/v1/trust/domains/peer.mssante.fr").status_code == 200
    # Certificates: issue for the demo doctor, revoke, CRL.
    r = c.post("/api/v1/certificates", json={"subject": doctor_address(DOMAIN),
                                             "kind": "personal-auth"})
    assert r.status_code == 201, r.text
    serial = r.json()["serial"]
    r = c.post("/api/v1/certificates", json={"subject": doctor_address(DOMAIN),
                                             "kind": "org-seal"})
    assert r.status_code == 400 and "cannot hold a org-seal" in r.json()["error"]
    assert c.get(f"/api/v1/certificates/{serial}/pem").text.startswith("-----BEGIN CERT")
    r = c.post(f"/api/v1/certificates/{serial}/revoke", json={"reason": "key-compromise"})
    assert r.json()["status"] == "revoked"
    assert c.post(f"/api/v1/certificates/{serial}/revoke").status_code == 409
    from cryptography import x509

    crl = x509.load_pem_x509_crl(c.get("/api/v1/crls/persons").content)
    assert crl.get_revoked_certificate_by_serial_number(int(serial, 16)) is not None
    assert c.get("/api/v1/crls/nowhere").status_code == 422
    # Prescriptions, DMP, queue: empty but answering; unknown ids are 404.
    assert c.get("/api/v1/prescriptions").json()["total"] == 0
    assert c.get("/api/v1/prescriptions/01S2TBPZ2JCNZZYGH0").status_code in (400, 404)
    assert c.get("/api/v1/dmp/documents", params={"patient": PATIENT_INS}).json()["total"] == 0
    assert c.get("/api/v1/dmp/documents").status_code == 422  # the patient is required
    assert c.get("/api/v1/queue").json()["total"] == 0
    assert c.get("/api/v1/queue/0123456789ABCDEF01234").status_code == 404
    # The audit log: newest first, filtered.
    entries = c.get("/api/v1/audit", params={"action": "pki."}).json()["items"]
    assert [e["action"] for e in entries] == ["pki.revoke", "pki.issue"]
    status = c.get("/api/v1/status").json()
    assert status["mailboxes"]["PER"] == 2 and status["queue"]["depth"] == 0
    assert c.get("/api/v1/me").json()["name"] == "alice"


def test_console_cookies_csrf_headers_and_auditor(api):
    from gateway.admins import totp

    admins, client = api
    c = client(None)
    r = c.get("/console/mailboxes")
    assert r.status_code == 303 and r.headers["location"] == "/console/login"
    page = c.get("/console/login")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    assert "frame-ancestors 'none'" in csp and "form-action 'self'" in csp
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["x-frame-options"] == "DENY"
    login_csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    # Without the login form's token (a cross-site post): refused, no session.
    r = c.post("/console/login", data={"csrf": "forged", "name": "eve",
                                       "password": "correct horse battery", "code": "000000"})
    assert r.status_code == 401 and "Formulaire : la page de connexion a expiré" in r.text
    c.cookies.clear()
    page = c.get("/console/login")
    login_csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    from gateway.admins import open_accounts
    from gateway.admins.model import Caller

    accounts = open_accounts(admins.config)
    eve_secret = accounts.reset_totp(Caller.local("test"), "eve")
    accounts.close()
    r = c.post("/console/login", data={"csrf": login_csrf, "name": "eve",
                                       "password": "correct horse battery",
                                       "code": totp.code(eve_secret)})
    assert r.status_code == 303
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("__Host-mssgw-session=")
    for flag in ("Secure", "HttpOnly", "SameSite=strict", "Path=/"):
        assert flag.lower() in cookie.lower(), cookie
    # An auditor reads, sees no change form, and a forged change is refused.
    page = c.get(f"/console/mailboxes/{doctor_address(DOMAIN)}")
    assert page.status_code == 200 and "Suspendre" not in page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    r = c.post(f"/console/mailboxes/{doctor_address(DOMAIN)}/suspend", data={"csrf": csrf})
    assert r.status_code == 403 and "eve est auditeur : lecture seule" in r.text
    r = c.post(f"/console/mailboxes/{doctor_address(DOMAIN)}/suspend", data={})
    assert r.status_code == 401


def test_queue_retry_and_bounce_return_the_message_to_its_sender(api):
    import time

    from gateway.store.maildir import mailbox_path
    from gateway.store.queue import Entry, Queue, new_queue_id

    admins, client = api
    c = client(admins.admin_token)
    sender = doctor_address(DOMAIN)
    data = (f"From: <{sender}>\r\nTo: <x@elsewhere.localhost>\r\nSubject: Compte rendu\r\n"
            "Message-ID: <cr1@test.localhost>\r\n\r\nBonjour.\r\n").encode()
    qid = new_queue_id()
    Queue(admins.config.queue_path).enqueue_many([Entry(qid, sender, ["x@elsewhere.localhost"],
                                                        data)])
    deadline = time.monotonic() + 20  # the runner tries once (refused), then waits an hour
    while time.monotonic() < deadline:
        shown = c.get(f"/api/v1/queue/{qid}").json()
        if shown["recipients"][0]["attempts"]:
            break
        time.sleep(0.2)
    assert "Subject: Compte rendu" in shown["headers"]
    assert c.post(f"/api/v1/queue/{qid}/retry").json() == {"retry": [qid]}
    inbox = mailbox_path(admins.config.mailboxes_path, sender) / "new"
    before = set(inbox.iterdir()) if inbox.exists() else set()
    r = c.post(f"/api/v1/queue/{qid}/bounce")
    assert r.status_code in (200, 409), r.text  # 409: the runner held it; try once more
    if r.status_code == 409:
        time.sleep(1)
        assert c.post(f"/api/v1/queue/{qid}/bounce").status_code == 200
    assert c.get(f"/api/v1/queue/{qid}").status_code == 404
    (dsn,) = set(inbox.iterdir()) - before
    text = dsn.read_bytes()
    assert b"multipart/report; report-type=delivery-status" in text
    assert b"returned to the sender by the gateway's administrator" in text
    actions = [e.action for e in audit.read(admins.config, target=qid)]
    assert actions[0] == "queue.show" and "queue.retry" in actions
    assert actions[-1] == "queue.bounce"


def test_client_certificates_log_in_to_the_api_and_the_console(api, capsys):
    """A client certificate of our CA bound to an administrator (`mssgw admin certificate`)
    is a credential for the API and the console, over real mutual TLS; a certificate bound to
    nobody is not, an auditor's changes nothing, a revoked one stops working at once."""
    from directory_cli import Cli

    from gateway.pki import ca

    admins, client = api
    config = admins.config

    def issue(name: str):  # personal-auth: the clientAuth extended key usage
        return ca.issue(config, "personal-auth", f"{name}@test.localhost", f"Admin {name}")

    alice, eve, bob, stranger = (issue(n) for n in ("alice", "eve", "bob", "stranger"))
    cli = Cli(config.home, capsys)
    cli.ok("admin", "certificate", "alice", alice.serial)
    cli.ok("admin", "certificate", "eve", str(eve.cert_path))
    cli.ok("admin", "add", "bob", "--certificate", bob.serial, "--no-password")
    # The API: the certificate says who is calling; the audit log names them.
    c = client(None, alice)
    me = c.get("/api/v1/me").json()
    assert (me["name"], me["role"], me["actor"]) == ("alice", "administrator", "admin:alice")
    r = c.post("/api/v1/mailboxes/applications", json={"email": f"lab@{DOMAIN}", "name": "Lab"})
    assert r.status_code == 201, r.text
    (added,) = audit.read(config, target=f"lab@{DOMAIN}")
    assert added.actor == "admin:alice"
    # HTTP/2: every stream of the connection is the certificate's holder's, and nobody
    # else's on other connections at the same time.
    h2, anonymous = client(None, alice, http2=True), client(None, http2=True)
    for _ in range(3):
        r = h2.get("/api/v1/me")
        assert r.http_version == "HTTP/2" and r.json()["name"] == "alice"
        assert anonymous.get("/api/v1/me").status_code == 401
    # An auditor's certificate reads, and changes nothing.
    auditor = client(None, eve)
    assert auditor.get(f"/api/v1/mailboxes/lab@{DOMAIN}").status_code == 200
    r = auditor.post(f"/api/v1/mailboxes/lab@{DOMAIN}/suspend")
    assert r.status_code == 403 and "auditor" in r.json()["error"]
    assert c.get(f"/api/v1/mailboxes/lab@{DOMAIN}").json()["state"] == "active"
    # A valid certificate of our CA that no administrator holds: 401, as without one.
    r = client(None, stranger).get("/api/v1/status")
    assert r.status_code == 401 and r.json()["error"].startswith("authentication:")
    # Revoked while the gateway runs: refused from the next request on.
    robot = client(None, bob)
    assert robot.get("/api/v1/me").json()["name"] == "bob"
    r = c.post(f"/api/v1/certificates/{bob.serial}/revoke", json={"reason": "key-compromise"})
    assert r.json()["status"] == "revoked"
    assert robot.get("/api/v1/me").status_code == 401  # the same (kept-alive) connection
    assert client(None, bob).get("/api/v1/me").status_code == 401  # a new one
    # The console: the certificate's holder is offered a login without password or code.
    browser = client(None, alice)
    page = browser.get("/console/login")
    assert "Se connecter avec mon certificat" in page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    r = browser.post("/console/login/certificate", data={"csrf": csrf})
    assert r.status_code == 303 and r.headers["location"] == "/console/"
    page = browser.get("/console/")
    assert page.status_code == 200 and "alice (administrateur)" in page.text
    logins = [e for e in audit.read(config, action="admin.login") if e.target == "alice"]
    assert logins[-1].details["method"] == "certificate"
    # ...and nobody else is.
    other = client(None, stranger)
    page = other.get("/console/login")
    assert "Se connecter avec mon certificat" not in page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    r = other.post("/console/login/certificate", data={"csrf": csrf})
    assert r.status_code == 401
    assert "ce certificat n'est lié à aucun administrateur" in html.unescape(r.text)
    assert other.get("/console/").status_code == 303  # no session


def console_messages(page: str) -> dict[str, str]:
    """The refusals a console page shows: {field: message} ("_" for the page's own)."""
    found = {m.group(1): html.unescape(m.group(2)) for m in re.finditer(
        r'<p class="field-error" id="e-([a-z_]+)" role="alert">(.*?)</p>', page, re.S)}
    for m in re.finditer(r'<p class="notice error" role="alert" id="(?:error|login-error)">'
                         r"(.*?)</p>", page, re.S):
        found["_"] = html.unescape(m.group(1))
    return found


def test_the_console_says_every_refusal_in_french(api):
    """The console's forms refused with the same rules as the CLI and the API: each message is
    the French of the very error the service raises (computed here by calling the service with
    the same input), never the English one the API answers."""
    from gateway.admins import open_accounts, totp
    from gateway.admins.model import Caller
    from gateway.audit import no_record
    from gateway.directory import open_directory
    from gateway.directory.admin import MailboxService, TrustService
    from gateway.errors import GatewayError
    from gateway.french import say
    from gateway.pki.admin import CertificateService

    admins, client = api
    config = admins.config
    directory = open_directory(config)
    caller = Caller.local("test")
    mailboxes, trust = MailboxService(directory, no_record, caller), TrustService(directory, caller)
    pki = CertificateService(config, no_record, caller)
    accounts = open_accounts(config)

    def refusal(call) -> GatewayError:  # type: ignore[no-untyped-def]
        with pytest.raises(GatewayError) as err:
            call()
        return err.value

    browser = client(None)
    page = browser.get("/console/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    r = browser.post("/console/login", data={"csrf": csrf, "name": "alice", "password": "nope",
                                             "code": "000000"})
    assert console_messages(r.text) == {"_": "Connexion : nom, mot de passe ou code erroné"}
    csrf = re.search(r'name="csrf" value="([^"]+)"', r.text).group(1)  # the form's new token
    secret = accounts.reset_totp(caller, "alice")
    r = browser.post("/console/login", data={"csrf": csrf, "name": "alice",
                                             "password": "correct horse battery",
                                             "code": totp.code(secret)})
    assert r.status_code == 303
    csrf = re.search(r'name="csrf" value="([^"]+)"', browser.get("/console/").text).group(1)
    doctor = doctor_address(DOMAIN)
    from gateway.web.console import current_values

    shown_now = current_values(directory.require(doctor))  # what the edit form sends back
    per = {"email": f"dr.who@{DOMAIN}", "rpps": RPPS_OK, "given_name": "John",
           "family_name": "Smith", "profession": "10"}
    org = {"email": f"pharma2@{DOMAIN}", "finess": "750712184", "name": "Pharma", "kind":
           "pharmacy"}
    patient = {"ins": "279035121518989", "birth_name": "X", "given_names": "Y", "sex": "F",
               "birth_date": "1979-03-15", "birth_place": "51215"}
    # (console form, its data, the field the message goes to, the same call to the service)
    cases = [
        ("/console/mailboxes/new", {"type": "PER", **per, "rpps": RPPS_BAD_KEY}, "rpps",
         lambda: mailboxes.add_professional(**{**per, "rpps": RPPS_BAD_KEY})),
        ("/console/mailboxes/new", {"type": "PER", **per, "profession": ""}, "profession",
         lambda: mailboxes.add_professional(**{**per, "profession": ""})),
        ("/console/mailboxes/new", {"type": "PER", **per, "email": "x@elsewhere.localhost"},
         "email", lambda: mailboxes.add_professional(**{**per, "email": "x@elsewhere.localhost"})),
        ("/console/mailboxes/new", {"type": "PER", **per, "savoir_faire": "C99"}, "savoir_faire",
         lambda: mailboxes.add_professional(**{**per, "savoir_faire": "C99"})),
        ("/console/mailboxes/new", {"type": "PER", **per, "phone": "call me"}, "phone",
         lambda: mailboxes.add_professional(**{**per, "phone": "call me"})),
        ("/console/mailboxes/new", {"type": "ORG", **org, "finess": "750712185"}, "finess",
         lambda: mailboxes.add_organisation(**{**org, "finess": "750712185"})),
        ("/console/mailboxes/new", {"type": "ORG", **org, "siret": "73282932000074"}, "siret",
         lambda: mailboxes.add_organisation(**{**org, "siret": "73282932000074"})),
        ("/console/mailboxes/new", {"type": "PATIENT", **patient, "sex": "M"}, "ins",
         lambda: mailboxes.add_patient(**{**patient, "sex": "M"})),
        ("/console/mailboxes/new", {"type": "PATIENT", **patient, "ins": "279035121518980"},
         "ins", lambda: mailboxes.add_patient(**{**patient, "ins": "279035121518980"})),
        ("/console/mailboxes/new", {"type": "APP", "email": f"app@{DOMAIN}", "name": ""}, "name",
         lambda: mailboxes.add_application(email=f"app@{DOMAIN}", name="")),
        (f"/console/mailboxes/{doctor}/edit", {**shown_now, "family_name": ""}, "family_name",
         lambda: mailboxes.update(doctor, {"family_name": ""})),
        (f"/console/mailboxes/{doctor}/edit", {**shown_now, "structure": doctor}, "structure",
         lambda: mailboxes.update(doctor, {"structure": doctor})),
        (f"/console/mailboxes/{doctor}/password", {"password": "short"}, "password",
         lambda: mailboxes.set_password(doctor, "short")),
        ("/console/trust/add", {"name": "not a domain"}, "name",
         lambda: trust.add("not a domain")),
        ("/console/trust/add", {"name": "peer.example.fr", "dn": "not a DN"}, "dn",
         lambda: trust.add("peer.example.fr", ["not a DN"])),
        ("/console/certificates/issue", {"subject": f"nobody@{DOMAIN}", "kind": "personal-auth"},
         "subject", lambda: pki.issue(f"nobody@{DOMAIN}", "personal-auth")),
        ("/console/certificates/issue", {"subject": doctor, "kind": "org-seal"}, "subject",
         lambda: pki.issue(doctor, "org-seal")),
        ("/console/tokens/new", {"admin": "alice", "label": "x", "scopes": "everything"},
         "scopes", lambda: accounts.create_token(caller, "alice", "x", ["everything"])),
        ("/console/tokens/new", {"admin": "alice", "label": "", "scopes": "*:read"}, "label",
         lambda: accounts.create_token(caller, "alice", "", ["*:read"])),
    ]
    for url, data, field, call in cases:
        exc = refusal(call)
        r = browser.post(url, data={"csrf": csrf, **data})
        shown = console_messages(r.text)
        assert r.status_code in (400, 404, 409, 422), (url, data, r.status_code)
        assert shown.get(field) == say(exc), (url, data, shown, str(exc))
        assert str(exc) not in r.text and not shown[field].startswith("Opération refusée")
    # Pages refused whole (an error page), in French too.
    from gateway.audit import parse_since

    wrong = [("/console/audit?depuis=hier", lambda: parse_since("hier")),
             ("/console/mailboxes?kind=XYZ", lambda: mailboxes.page(kind="XYZ")),
             ("/console/certificates/ZZ/revoke", None),
             ("/console/prescriptions/NOTANID", None)]
    for url, call in wrong:
        r = browser.post(url, data={"csrf": csrf}) if url.endswith("revoke") else browser.get(url)
        shown = console_messages(r.text)
        assert r.status_code >= 400 and "_" in shown, (url, r.status_code)
        assert not shown["_"].startswith("Opération refusée"), shown
        if call is not None:
            assert shown["_"] == say(refusal(call))
    r = browser.post(f"/console/mailboxes/{doctor}/suspend", data={})  # no CSRF token
    assert console_messages(r.text)["_"].startswith("Formulaire : il est périmé")
    accounts.close()
    directory.close()


def console_login(client, admins, name: str):  # type: ignore[no-untyped-def]
    """A console session of `name` (a new TOTP secret, its current code): (client, CSRF)."""
    from gateway.admins import open_accounts, totp
    from gateway.admins.model import Caller

    accounts = open_accounts(admins.config)
    try:
        secret = accounts.reset_totp(Caller.local("test"), name)
    finally:
        accounts.close()
    browser = client(None)
    page = browser.get("/console/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    r = browser.post("/console/login", data={"csrf": csrf, "name": name, "password":
                                             "correct horse battery", "code": totp.code(secret)})
    assert r.status_code == 303, r.text
    page = browser.get("/console/")
    return browser, re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


def test_reads_of_prescriptions_and_dmp_documents_are_audited_under_the_reader(api):
    """A prescription and a DMP document of the demo patient, read through the API (alice's
    token) and the console (eve, auditor, in a session): every list, show and download is in
    the audit log under the reader's name, with the patient it concerns."""
    import datetime as dt

    from registry_fixtures import prescription

    from gateway.dmp import Actor, DocumentMetadata, open_dmp
    from gateway.prescriptions.registry import open_registry

    admins, client = api
    config = admins.config
    registry = open_registry(config)
    try:
        ident = registry.register(
            prescription(), prescriber_address=doctor_address(DOMAIN),
            patient_address=f"{PATIENT_INS}@patient.{DOMAIN}", package=b"PK\x03\x04",
            actor="test").identifier
    finally:
        registry.close()
    uid, content = "1.2.250.1.999.16.1", b"<ClinicalDocument>compte rendu</ClinicalDocument>"
    dmp = open_dmp(config)
    try:
        dmp.submit(DocumentMetadata(
            unique_id=uid, patient_ins=PATIENT_INS, class_code="11", type_code="11490-0",
            format_code="urn:ihe:iti:xds-sd:text:2008", title="Compte rendu",
            creation_time=dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)),
            content, actor=Actor.gateway())
    finally:
        dmp.close()

    def reads(actor: str) -> list[tuple[str, str, object]]:
        """(action, target, the patient it names) of `actor`'s reads, oldest first."""
        return [(e.action, e.target, e.details.get("patient") or e.details.get("patients"))
                for e in audit.read(config) if e.actor == actor
                and e.action.startswith(("prescription.", "dmp."))]

    # The API, with alice's token.
    token = admins.admin_token.split("_")[1]
    earlier = len(reads(f"admin:alice (token {token})"))  # this module's other tests
    c = client(admins.admin_token)
    page = c.get("/api/v1/prescriptions", params={"patient": PATIENT_INS}).json()
    assert [p["identifier"] for p in page["items"]] == [ident] and page["total"] == 1
    assert c.get(f"/api/v1/prescriptions/{ident}").json()["patient_ins"] == PATIENT_INS
    docs = c.get("/api/v1/dmp/documents", params={"patient": PATIENT_INS}).json()
    assert [d["unique_id"] for d in docs["items"]] == [uid]
    assert c.get(f"/api/v1/dmp/documents/{uid}").json()["title"] == "Compte rendu"
    got = c.get(f"/api/v1/dmp/documents/{uid}/content")
    assert got.content == content and got.headers["content-type"].startswith("text/xml")
    assert reads(f"admin:alice (token {token})")[earlier:] == [
        ("prescription.list", PATIENT_INS, [PATIENT_INS]),
        ("prescription.read", ident, PATIENT_INS),
        ("dmp.query", PATIENT_INS, None),
        ("dmp.entry", uid, PATIENT_INS),
        ("dmp.retrieve", uid, PATIENT_INS),
    ]
    # The console, an auditor reading the same: each page is a read under her name.
    browser, _ = console_login(client, admins, "eve")
    listing = browser.get("/console/prescriptions", params={"patient": PATIENT_INS})
    assert listing.status_code == 200 and ident in listing.text
    assert PATIENT_INS in browser.get(f"/console/prescriptions/{ident}").text
    assert uid in browser.get("/console/dmp", params={"patient": PATIENT_INS}).text
    assert "Compte rendu" in browser.get(f"/console/dmp/{uid}").text
    assert browser.get(f"/console/dmp/{uid}/contenu").content == content
    assert reads("admin:eve") == [
        ("prescription.list", PATIENT_INS, [PATIENT_INS]),
        ("prescription.read", ident, PATIENT_INS),
        ("dmp.query", PATIENT_INS, None),
        ("dmp.entry", uid, PATIENT_INS),
        ("dmp.retrieve", uid, PATIENT_INS),
    ]
    # A listing of everyone's prescriptions names the patients of the page it showed.
    assert c.get("/api/v1/prescriptions").json()["total"] == 1
    (last,) = reads(f"admin:alice (token {token})")[-1:]
    assert last == ("prescription.list", "*", [PATIENT_INS])
    # The audit log names patients: reading it through the API or the console is recorded too.
    found = c.get("/api/v1/audit", params={"target": PATIENT_INS}).json()["items"]
    assert {e["action"] for e in found} >= {"prescription.list", "dmp.query"}
    assert browser.get("/console/audit", params={"cible": PATIENT_INS}).status_code == 200
    queries = [(e.actor, e.target, e.details["via"], e.details["count"])
               for e in audit.read(config, action="audit.query")]
    assert queries[-2:] == [(f"admin:alice (token {token})", PATIENT_INS, "api", len(found)),
                            ("admin:eve", PATIENT_INS, "console", len(found) + 1)]
