"""Which mail skips the process pool: only what the dispensation flow would leave unchanged."""

from email.message import EmailMessage

from gateway.flows.dispense import PRECHECK_MAX_BYTES, may_be_dispensation

ROBOT = "ordonnances@x.localhost"
PHARMACIST = "ph.durand@x.localhost"
DOCTOR = "dr.martin@x.localhost"


def mail(body: str, attachment: tuple[str, bytes] | None = None) -> bytes:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = PHARMACIST, DOCTOR, "Bonjour"
    m.set_content(body)
    if attachment:
        name, data = attachment
        m.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    return bytes(m)


def test_ordinary_mail_skips_the_pool():
    assert not may_be_dispensation(mail("Merci pour votre courrier.\n"), (DOCTOR,), ROBOT)
    pdf = ("resultats.pdf", b"%PDF-1.7 ...")
    assert not may_be_dispensation(mail("Ci-joint.\n", pdf), (DOCTOR,), ROBOT)


def test_what_the_flow_reads_goes_to_the_pool():
    form = "Ordonnance : 01S 2TB PZ2 JCN ZZY GHZ\n1 : délivré ; 1 boîte\n"
    assert may_be_dispensation(mail(form), (DOCTOR,), ROBOT)
    assert may_be_dispensation(mail("  ORDONNANCE: x\n"), (DOCTOR,), ROBOT)
    assert may_be_dispensation(mail("bonjour\n"), (DOCTOR, ROBOT), ROBOT)
    cda = ("edisp.xml", b"<?xml version='1.0'?><ClinicalDocument/>")
    assert may_be_dispensation(mail("Ci-joint.\n", cda), (DOCTOR,), ROBOT)
    big = mail("x" * (PRECHECK_MAX_BYTES + 1))
    assert may_be_dispensation(big, (DOCTOR,), ROBOT)


def test_form_quoted_by_an_inline_forward_goes_to_the_pool():
    # the flow reads a form quoted with '> ' (clients forward inline that way), so must this
    quoted = "Pour info.\n\n> Ordonnance : 01S2TBPZ2JCNZZYGHZ\n> 1 : délivré\n"
    assert may_be_dispensation(mail(quoted), (DOCTOR,), ROBOT)


def test_relayed_mail_to_a_patient_goes_to_the_pool_only_with_a_zip():
    from gateway.flows.filing import may_hold_package

    assert not may_hold_package(mail("Votre rendez-vous est confirmé.\n"))
    assert not may_hold_package(mail("Ci-joint.\n", ("resultats.pdf", b"%PDF-1.7 ...")))
    assert may_hold_package(mail("Ci-joint.\n", ("IHE_XDM.zip", b"PK\x03\x04...")))
    assert may_hold_package(mail("Ci-joint.\n", ("paquet", b"PK\x03\x04...")))  # by its bytes
    assert may_hold_package(mail("x" * (PRECHECK_MAX_BYTES + 1)))
