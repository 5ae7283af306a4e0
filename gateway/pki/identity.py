"""Who a certificate is for: names and identifiers taken from the trust directory.

For a mailbox registered in the directory, the certificate's common name is its display name
and the subject carries the holder's national identifier (`8`+RPPS / `0`+ADELI for a
professional, `1`+FINESS / `3`+SIRET for a structure) in UID, and surname/given name for a
person. Until the directory exists (no mailbox repository), the address and --name are used.
"""

from __future__ import annotations

from gateway.config import Config
from gateway.directory.model import Mailbox
from gateway.pki.ca import Identity, PKIError


def _lookup(config: Config, email: str) -> tuple[bool, Mailbox | None]:
    """(directory available, the mailbox or None)."""
    return False, None


def identity_for(
    config: Config, kind: str, subject: str, name: str | None
) -> tuple[str | None, str, Identity, list[str]]:
    """(email, common name, identity, DNS names) for `mssgw pki issue SUBJECT --kind KIND`."""
    if kind == "server":
        return None, name or subject, Identity(), [subject]
    email = subject.strip().lower()
    available, mailbox = _lookup(config, email)
    if mailbox is None:
        if available:
            raise PKIError(f"{email}: no such mailbox in the directory")
        return email, name or email, Identity(), []
    return email, name or mailbox.display_name, identity_of(mailbox), []


def identity_of(mailbox: Mailbox) -> Identity:
    pro, org = mailbox.professional, mailbox.organisation
    if pro is not None:
        nid = f"8{pro.rpps}" if pro.rpps else (f"0{pro.adeli}" if pro.adeli else None)
        return Identity(surname=pro.family_name, given_name=pro.given_name, national_id=nid)
    if org is not None:
        nid = f"1{org.finess}" if org.finess else (f"3{org.siret}" if org.siret else None)
        return Identity(national_id=nid)
    return Identity()
