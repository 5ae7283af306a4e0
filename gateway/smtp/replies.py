"""SMTP replies with enhanced status codes (RFC 3463) and a sentence a person can act on."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class Reply:
    code: int
    status: str  # enhanced status code, e.g. "5.7.1"
    text: str

    def __str__(self) -> str:
        # One line of ASCII: a CR or LF would break the protocol, and replies are ASCII
        # (accents are dropped: "MSSanté" -> "MSSante").
        text = " ".join(self.text.split())
        text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
        return f"{self.code} {self.status} {text}"

    @property
    def permanent(self) -> bool:
        return self.code >= 500


def ok(text: str = "Ok") -> str:
    return f"250 2.0.0 {text}"


def no_such_mailbox(address: str) -> Reply:
    return Reply(550, "5.1.1", f"<{address}>: no such mailbox here")


def mailbox_disabled(address: str) -> Reply:
    return Reply(550, "5.2.1", f"<{address}>: this mailbox is suspended and cannot receive mail")


def outside_trust_space(address: str, domain: str) -> Reply:
    return Reply(
        550,
        "5.7.1",
        f"<{address}>: {domain} is not a domain of the MSSanté trust space; "
        "this gateway only exchanges mail with trust-space domains",
    )


def relay_denied(address: str) -> Reply:
    return Reply(
        550,
        "5.7.1",
        f"<{address}>: relaying denied: peers may only send to mailboxes of this gateway",
    )


def too_many_recipients(limit: int) -> Reply:
    return Reply(452, "4.5.3", f"too many recipients: at most {limit} per message")


def mailbox_full(address: str) -> Reply:
    return Reply(452, "4.2.2", f"<{address}>: mailbox full (over its quota), try again later")


def over_quota(address: str, limit: int) -> Reply:
    return Reply(552, "5.2.2", f"<{address}>: message larger than the mailbox's whole quota "
                               f"({limit} bytes)")


def too_big(limit: int, domain: str | None = None) -> Reply:
    where = f" for {domain}" if domain else ""
    return Reply(552, "5.3.4", f"message too big: the limit{where} is {limit} bytes")


def rate_limited(who: str, retry_after: float) -> Reply:
    return Reply(
        450, "4.7.1", f"too many messages from {who}; try again in {max(1, round(retry_after))} s"
    )


def sender_not_yours(sender: str, mailbox: str) -> Reply:
    if not sender:
        return Reply(
            553,
            "5.7.1",
            f"the null sender <> is reserved for delivery reports: send as <{mailbox}>, the"
            " mailbox you are authenticated as",
        )
    return Reply(
        553,
        "5.7.1",
        f"sender <{sender}> is not your mailbox: you are authenticated as <{mailbox}>",
    )


def smuggling() -> Reply:
    return Reply(
        550,
        "5.6.0",
        "message refused: it holds a bare CR or LF; every line must end with CRLF "
        "(protection against SMTP smuggling)",
    )


def peer_claims_our_address(field: str, address: str) -> Reply:
    return Reply(
        550,
        "5.7.1",
        f"message refused: {field}: <{address}> is an address of our own domains; mail from"
        " a trust-space peer cannot claim to come from one of our mailboxes",
    )


def too_deep(limit: int) -> Reply:
    return Reply(
        554,
        "5.6.0",
        f"message refused: its MIME parts are nested more than {limit} levels deep",
    )


def temporary_failure(queue_id: str) -> Reply:
    return Reply(
        451, "4.3.0", f"could not store the message ({queue_id}); nothing was accepted, retry"
    )
