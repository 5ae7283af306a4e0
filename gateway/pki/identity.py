"""Who a certificate is for: names and identifiers taken from the trust directory.

`mssgw pki issue EMAIL --kind K` issues only for a mailbox of the directory, active, whose kind
fits the certificate kind (personal kinds for professionals, organisation kinds for structures
and applications; patients get none). The certificate's common name is the mailbox's display
name (unless --name), and the subject carries the holder's national identifier in UID (`8`+RPPS
or `0`+ADELI for a professional, `1`+FINESS or `3`+SIRET for a structure — our choice, close to
what IGC-Santé certificates carry), with surname and given name for a person.
"""

from __future__ import annotations

from gateway.config import Config
from gateway.directory import open_directory
from gateway.directory.model import Mailbox, MailboxKind
from gateway.errors import NotFound
from gateway.pki.ca import Identity, PKIError
from gateway.texts import t

# Which mailbox kinds may hold which certificate kinds.
_FITS: dict[str, tuple[MailboxKind, ...]] = {
    "personal-auth": (MailboxKind.PER,),
    "personal-sign": (MailboxKind.PER,),
    "org-client": (MailboxKind.ORG, MailboxKind.APP),
    "org-seal": (MailboxKind.ORG, MailboxKind.APP),
}


def lookup(config: Config, email: str) -> Mailbox | None:
    directory = open_directory(config, actor="pki")
    try:
        return directory.get(email)
    finally:
        directory.close()


def identity_for(
    config: Config, kind: str, subject: str, name: str | None
) -> tuple[str | None, str, Identity, list[str]]:
    """(email, common name, identity, DNS names) for `mssgw pki issue SUBJECT --kind KIND`."""
    if kind == "server":
        return None, name or subject, Identity(), [subject]
    email = subject.strip().lower()
    mailbox = lookup(config, email)
    if mailbox is None:
        raise NotFound(t("{address}: no such mailbox in the directory (add it first)",
                         address=email))
    check_fits(mailbox, kind)
    return email, name or mailbox.display_name, identity_of(mailbox), []


def check_fits(mailbox: Mailbox, kind: str) -> None:
    allowed = _FITS.get(kind, ())
    if mailbox.kind not in allowed:
        fits = [k for k, kinds in _FITS.items() if mailbox.kind in kinds]
        hint = t(" (it may hold: {kinds})", kinds=", ".join(fits)) if fits else t(
            " (it may hold none)")
        raise PKIError(t(
            "{address}: a {mailbox_kind} mailbox cannot hold a {kind} certificate{hint}",
            address=mailbox.address, mailbox_kind=mailbox.kind.value, kind=kind, hint=hint))
    if not mailbox.active:
        raise PKIError(t("{address}: the mailbox is suspended", address=mailbox.address))


def identity_of(mailbox: Mailbox) -> Identity:
    pro, org = mailbox.professional, mailbox.organisation
    if pro is not None:
        nid = f"8{pro.rpps}" if pro.rpps else (f"0{pro.adeli}" if pro.adeli else None)
        return Identity(surname=pro.family_name, given_name=pro.given_name, national_id=nid)
    if org is not None:
        nid = f"1{org.finess}" if org.finess else (f"3{org.siret}" if org.siret else None)
        return Identity(national_id=nid)
    return Identity()
