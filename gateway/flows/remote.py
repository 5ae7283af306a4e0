"""Patients hosted by another operator: the prescription journey across the trust space.

In the real trust space a patient's mailbox is `<INS>@patient.<domain>` at the patients'
operator (Mon espace santé), reached through the relay like any other operator. The flows call
this module where a person is not in our directory:

- prescribing to a patient elsewhere (`prescribe`): the gateway has no directory entry for the
  patient, so the doctor's form carries the identity traits in lines of its own (`Nom de
  naissance :`, `Prénoms :`, `Sexe :`, `Date de naissance :`, `Lieu de naissance :`), checked
  as the directory checks a patient it registers (`directory.identity`: the INS key, and the
  INS against sex, birth year and month); the ordonnance is then built, signed, registered and
  filed as usual and the patient's message leaves by the outbound queue (`is_remote_patient`,
  `form_people`, `check_patient`, `delivery_note`);
- a forward from a patient elsewhere, through the relay, to one of our pharmacies (`verify`):
  checked like a local one; a prescription another operator's gateway registered (its
  signature chains to a peer's or the health PKI's anchor, not to our CA) is kept here from the
  signed package (`registry.record_external`), so that the pharmacy dispenses against it and
  its prescriber gets the report through the relay (`elsewhere`);
- the words people read about it (`ELSEWHERE`, `delivery_note`).

Kept in one module so the flows' own modules change little.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from gateway import identifiers as ids
from gateway.config import Config
from gateway.directory import validate as v
from gateway.documents.form import FormError, FormProblem
from gateway.documents.model import AuthorInfo, PatientInfo, Prescription
from gateway.drugs.bdpm import normalise_name
from gateway.errors import GatewayError
from gateway.flows.context import Context, now
from gateway.prescriptions.identifier import check_identifier
from gateway.prescriptions.registry import (
    AlreadyRegistered,
    PrescriptionRecord,
    validity_of,
)

if TYPE_CHECKING:
    from gateway.signature.verify import Verification

# The lines of the doctor's form that carry a remote patient's identity traits.
TRAITS = {
    "nom de naissance": "birth_name", "nom": "birth_name",
    "prenoms": "given_names", "prenom": "given_names", "prenoms de naissance": "given_names",
    "sexe": "sex",
    "date de naissance": "birth_date", "ne le": "birth_date", "nee le": "birth_date",
    "lieu de naissance": "birth_place", "commune de naissance": "birth_place",
}
TRAIT_LABELS = {
    "birth_name": "Nom de naissance", "given_names": "Prénoms", "sex": "Sexe",
    "birth_date": "Date de naissance", "birth_place": "Lieu de naissance",
}
_LINE = re.compile(r"^\s*([^:;]{2,40}?)\s*:\s*(.*)$")
_INS_LOCAL = re.compile(r"[0-9][0-9ab]{14}")

ELSEWHERE = (
    "Cette ordonnance a été enregistrée par la messagerie d'un autre opérateur de l'espace de"
    " confiance. La signature et le document ont été vérifiés ; son statut (annulation par le"
    " prescripteur, délivrances faites dans d'autres pharmacies) ne peut pas l'être d'ici :"
    " seules les délivrances enregistrées ici sont décomptées."
)

NO_PACKAGE = (
    " Une ordonnance faite chez un autre opérateur de l'espace de confiance ne se vérifie qu'avec"
    " son paquet signé (IHE_XDM.zip) : le patient doit transférer le message reçu avec ses"
    " pièces jointes."
)


# --- who is elsewhere ---------------------------------------------------------------------------


def is_remote_patient(config: Config, address: str) -> bool:
    """A patient's address at another operator: `<INS>@patient.<domain>` outside our own
    patients' domain (a string test; the SMTP policy already checked the domain is a peer's)."""
    local, at, domain = address.lower().rpartition("@")
    return bool(at) and domain.startswith("patient.") and \
        domain != config.gateway.patient_domain.lower() and bool(_INS_LOCAL.fullmatch(local))


def delivery_note(config: Config, address: str) -> str:
    """For the doctor's receipt: where the patient's message went."""
    if not is_remote_patient(config, address):
        return ""
    domain = address.rpartition("@")[2]
    return (f"Le patient est hébergé par un autre opérateur de l'espace de confiance ({domain}) :"
            " le message lui est transmis par la file d'envoi, avec le certificat de la"
            " messagerie, à l'opérateur dont la liste blanche donne le certificat. S'il ne peut"
            " être remis, un avis de non-remise vous parviendra.\n\n")


# --- prescribing to a patient elsewhere ---------------------------------------------------------


def _traits(text: str) -> tuple[str, dict[str, tuple[int, str]]]:
    """`text` with its trait lines blanked (line numbers kept for the form's own problems),
    and the traits found: field -> (line number, value)."""
    found: dict[str, tuple[int, str]] = {}
    lines = text.replace("\r\n", "\n").split("\n")
    for i, line in enumerate(lines):
        if line.rstrip() == "--":
            break
        m = _LINE.match(line)
        key = TRAITS.get(normalise_name(m.group(1))) if m else None
        if m is None or key is None:
            continue
        found.setdefault(key, (i + 1, m.group(2).strip()))
        lines[i] = ""
    return "\n".join(lines), found


def _date(value: str) -> dt.date:
    for fmt in ("%d/%m/%Y", "%Y-%m-%d", "%d-%m-%Y", "%d.%m.%Y"):
        try:
            return dt.datetime.strptime(value.strip(), fmt).date()
        except ValueError:
            continue
    raise v.InvalidField("birth-date", value, "JJ/MM/AAAA")


_TRAIT_RULES: dict[str, str] = {
    "birth_name": "le nom de naissance ne peut pas être vide",
    "given_names": "les prénoms ne peuvent pas être vides",
    "sex": "le sexe s'écrit F ou M",
    "birth_date": "la date de naissance s'écrit JJ/MM/AAAA, et passée",
    "birth_place": "le lieu de naissance est le code INSEE de la commune (5 caractères,"
                   " 99xxx pour une naissance à l'étranger)",
}


def _checked_traits(found: dict[str, tuple[int, str]], problems: list[FormProblem]
                    ) -> dict[str, Any]:
    """Each trait through the directory's own rules (directory.validate)."""
    out: dict[str, Any] = {}
    checks = {"birth_name": lambda x: v.text(x, "birth-name"),
              "given_names": lambda x: v.text(x, "given-names"), "sex": v.sex,
              "birth_date": lambda x: v.birth_date(_date(x)), "birth_place": v.birth_place}
    for key, (line, value) in found.items():
        try:
            out[key] = checks[key](value)
        except GatewayError:
            problems.append(FormProblem(line, f"{TRAIT_LABELS[key]} « {value} » : "
                                        + _TRAIT_RULES[key]))
    return out


def _remote_patient(address: str, found: dict[str, tuple[int, str]], ins_oid: str,
                    problems: list[FormProblem]) -> PatientInfo | None:
    """The patient a form describes for `address` (elsewhere), or None with the problems."""
    local = address.rpartition("@")[0]
    try:
        ins = ids.ins(local)
    except GatewayError:
        problems.append(FormProblem(0, f"l'adresse {address} ne porte pas un INS valide : la clé"
                                    " (2 derniers chiffres) ne correspond pas, vérifiez-la"))
        return None
    missing = [TRAIT_LABELS[k] for k in TRAIT_LABELS if k not in found]
    if missing:
        problems.append(FormProblem(0, (
            f"le patient {address} est hébergé par un autre opérateur : cette messagerie ne"
            " connaît pas son identité. Donnez ses traits d'identité (ceux de sa carte"
            " Vitale ou de sa pièce d'identité) dans le formulaire, une ligne chacun :"
            " « Nom de naissance : ... », « Prénoms : ... », « Sexe : F ou M »,"
            " « Date de naissance : JJ/MM/AAAA », « Lieu de naissance : code INSEE de la"
            " commune » ; manque : " + ", ".join(missing))))
    traits = _checked_traits(found, problems)
    if missing or len(traits) < len(TRAIT_LABELS):
        return None
    try:
        v.ins_matches_traits(ins, traits["sex"], traits["birth_date"])
    except GatewayError as exc:
        rule = getattr(exc, "rule", str(exc))
        problems.append(FormProblem(found["sex"][0], (
            f"les traits ne correspondent pas à l'INS {ins} ({_french(rule)}) : vérifiez le"
            " sexe, la date de naissance et l'INS")))
        return None
    return PatientInfo(ins=ins, ins_oid=ins_oid, birth_name=traits["birth_name"],
                       given_names=traits["given_names"], sex=traits["sex"],
                       birth_date=traits["birth_date"], birth_place=traits["birth_place"])


def _french(rule: str) -> str:
    m = re.match(r"its (first digit|birth year|birth month) (\S+) contradicts (?:the )?"
                 r"(sex|birth date) (\S+)", rule)
    if not m:
        return rule
    what = {"first digit": "le premier chiffre", "birth year": "l'année de naissance",
            "birth month": "le mois de naissance"}[m.group(1)]
    trait = "le sexe" if m.group(3) == "sex" else "la date de naissance"
    return f"{what} {m.group(2)} de l'INS contredit {trait} {m.group(4)}"


def _agrees(local: PatientInfo, found: dict[str, tuple[int, str]],
            problems: list[FormProblem]) -> None:
    """Traits written for a patient of our directory must be the directory's."""
    traits = _checked_traits(found, problems)
    ours = {"birth_name": local.birth_name, "given_names": local.given_names,
            "sex": local.sex, "birth_date": local.birth_date, "birth_place": local.birth_place}
    for key, value in traits.items():
        same = (normalise_name(str(value)) == normalise_name(str(ours[key])) if
                isinstance(value, str) else value == ours[key])
        if not same:
            shown = f"{ours[key]:%d/%m/%Y}" if isinstance(ours[key], dt.date) else ours[key]
            problems.append(FormProblem(found[key][0], (
                f"{TRAIT_LABELS[key]} « {found[key][1]} » ne correspond pas à l'annuaire de la"
                f" messagerie ({shown}) : vérifiez l'identité du patient")))


@dataclasses.dataclass
class _WithPatient:
    """The directory's people, plus the remote patient the form describes."""

    people: Any  # documents.people.People
    patient_info: PatientInfo

    def patient(self, ins: str) -> PatientInfo | None:
        if ins == self.patient_info.ins:
            return self.patient_info
        return self.people.patient(ins)  # type: ignore[no-any-return]

    def professional(self, key: str) -> AuthorInfo | None:
        return self.people.professional(key)  # type: ignore[no-any-return]


def form_people(ctx: Context, text: str, patient_address: str
                ) -> tuple[str, Any, list[FormProblem]]:
    """(the form without its trait lines, the people to read it against, the traits'
    problems). For a patient elsewhere the traits describe the patient (refused without
    them); for one of ours they must agree with the directory."""
    rest, found = _traits(text)
    problems: list[FormProblem] = []
    if is_remote_patient(ctx.config, patient_address):
        ins_oid = getattr(ctx.people, "ins_oid", ids.OID_INS_TEST)
        patient = _remote_patient(patient_address, found, ins_oid, problems)
        if patient is None:
            # A stand-in keeps the form from adding "unknown patient" to the real problems.
            local = patient_address.rpartition("@")[0].upper()
            patient = PatientInfo(ins=local, ins_oid=ins_oid, birth_name="?", given_names="?",
                                  sex="F", birth_date=dt.date(2000, 1, 1))
        return rest, _WithPatient(ctx.people, patient), problems
    if found:
        mailbox = ctx.mailbox(patient_address)
        if mailbox is not None and mailbox.patient is not None:
            local_info = ctx.people.patient(mailbox.patient.ins)
            if local_info is not None:
                _agrees(local_info, found, problems)
    return rest, ctx.people, problems


def refusal_report(problems: Sequence[FormProblem]) -> str:
    return FormError(sorted(problems, key=lambda p: p.line)).report()


def check_patient(p: Prescription, address: str) -> str | None:
    """Why a prescription (from a CDA or a package, or the form) cannot go to the patient
    elsewhere at `address`, or None: the document's patient must be the address's INS, with
    traits that agree with it as the directory requires of its own patients."""
    local = address.rpartition("@")[0].upper()
    if p.patient.ins.upper() != local:
        return (f"l'ordonnance est au nom du patient INS {p.patient.ins}, mais vous l'adressez à"
                f" {address} (INS {local}) : une ordonnance va au patient qu'elle concerne")
    try:
        ids.ins(p.patient.ins)
        v.ins_matches_traits(p.patient.ins, v.sex(p.patient.sex), p.patient.birth_date)
    except GatewayError as exc:
        return (f"l'identité du patient ne correspond pas à son INS {p.patient.ins}"
                f" ({_french(getattr(exc, 'rule', str(exc)))})")
    return None


# --- a prescription registered elsewhere, forwarded to one of our pharmacies -------------------


@dataclasses.dataclass(frozen=True)
class External:
    """What `elsewhere` found: `record` kept here (valid) or the reason it was not."""

    valid: bool
    reason: str  # short, for the header
    explanation: str  # for people
    record: PrescriptionRecord | None = None


def checked(config: Config, package: bytes) -> tuple[Verification, tuple[x509.Certificate, ...]]:
    """`signature.trust.check_package`, and the chain the signing certificate was verified
    through (leaf first, anchor last; empty when the signature does not verify): the verdict
    needs both, and one verification costs ~5 ms (bench_remote)."""
    from gateway.pki import Purpose, verify_certificate
    from gateway.signature.verify import verify_package
    from gateway.xdm import Limits

    seen: list[tuple[x509.Certificate, ...]] = []

    def check(cert: x509.Certificate, intermediates: Sequence[x509.Certificate],
              at: dt.datetime) -> tuple[bool, str]:
        result = verify_certificate(config, cert, intermediates, Purpose.SIGN, at)
        seen.append(result.chain)
        return result.ok, result.reason

    verified = verify_package(package, check, limits=Limits.of(config))
    return verified, (seen[-1] if verified.valid and seen else ())


def signer_chain(config: Config, package: bytes) -> tuple[x509.Certificate, ...]:
    """The chain the package's signing certificate was verified through, empty when the
    signature does not verify."""
    return checked(config, package)[1]


def signed_under_our_ca(config: Config, chain: Sequence[x509.Certificate]) -> bool:
    from gateway.pki.files import Layout
    from gateway.pki.kinds import CA

    layout = Layout.of(config)
    mine = set()
    for ca in CA:
        try:
            mine.add(x509.load_pem_x509_certificate(layout.ca_cert(ca).read_bytes()))
        except (OSError, ValueError):
            continue
    return any(c in mine for c in chain)


def signer_is_author(cert: x509.Certificate, author: AuthorInfo) -> bool:
    """A certificate naming a national identifier (our PKI's UID: 8+RPPS, 1+FINESS...) must
    name the document's author or the author's structure; one naming none is not judged."""
    uids = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.USER_ID)]
    if not uids:
        return True
    allowed = {author.national_id} | ({author.structure.national_id} if author.structure else set())
    return any(u in allowed for u in uids)


def patient_address(ctx: Context, p: Prescription, sender: str) -> str:
    """The mailbox of the document's patient: the sender when it is them; else ours for that
    INS, or the same INS at the sender's patients' operator (a relative forwarded it)."""
    ins = p.patient.ins.lower()
    local, _, domain = sender.lower().rpartition("@")
    if local == ins:
        return sender.lower()
    try:
        mailbox = ctx.directory.find_by_ins(p.patient.ins)
    except GatewayError:  # not an INS the directory would hold
        mailbox = None
    if mailbox is not None:
        return mailbox.address
    if domain.startswith("patient.") and _INS_LOCAL.fullmatch(ins):
        return f"{ins}@{domain}"
    return sender.lower()


def elsewhere(ctx: Context, package: bytes, cda: bytes, p: Prescription, sender: str,
              chain: Sequence[x509.Certificate] | None = None) -> External | None:
    """A validly signed package whose identifier our registry does not know: when its signer
    chains to another operator's (or the health PKI's) anchor and its author is not one of our
    mailboxes, the prescription was registered elsewhere; it is kept here (`record_external`,
    with the package) once its identifier, author and validity are checked. None: signed under
    our own CA or by one of our prescribers, so not registered elsewhere (the registry's
    "unknown identifier" stands)."""
    if chain is None:  # not verified by the caller
        chain = signer_chain(ctx.config, package)
    if not chain or signed_under_our_ca(ctx.config, chain):
        return None
    author = (p.author.email or "").strip().lower()
    if author and ctx.directory.is_own_domain(author.rpartition("@")[2]):
        return None  # our prescribers' prescriptions are registered here, whoever certified
    identifier = p.identifier or ""
    check = check_identifier(identifier)
    if not check.ok:
        return External(False, "invalid identifier",
                        f"L'identifiant de l'ordonnance ({identifier}) n'est pas valide :"
                        " son caractère de contrôle ne correspond pas.")
    if not signer_is_author(chain[0], p.author):
        return External(False, "signer is not the author",
                        "Le document est signé par un autre professionnel que son"
                        f" prescripteur ({p.author.given_name} {p.author.family_name}) : il"
                        " ne peut pas être accepté.")
    try:
        validity_end, _ = validity_of(p)
    except GatewayError as exc:
        return External(False, "invalid document", f"Le document n'est pas valide : {exc}.")
    if now().date() > validity_end:
        return External(False, "expired",
                        f"L'ordonnance devait être présentée avant le {validity_end:%d/%m/%Y}"
                        " (trois mois après sa date, ou la fin de validité qu'elle indique).")
    prescriber = (p.author.email or "").strip().lower()
    try:
        if prescriber:
            prescriber = v.address(prescriber)
    except GatewayError:
        prescriber = ""
    try:
        with ctx.records.unit() as uow:
            record = uow.registry.record_external(
                p, prescriber_address=prescriber, patient_address=patient_address(ctx, p, sender),
                package=package, actor=sender, now=now())
    except AlreadyRegistered:  # another process kept it meanwhile
        record = ctx.registry.get(identifier, actor=sender)
    except GatewayError as exc:
        return External(False, "invalid document", f"Le document n'est pas valide : {exc}.")
    return External(True, "signature checked, registered elsewhere", ELSEWHERE, record)
