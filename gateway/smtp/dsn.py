"""Delivery status notifications (RFC 3464 `multipart/report; report-type=delivery-status`).

Built as bytes directly: the report is a few fixed fields, and writing them ourselves keeps CRLF
line ends and field order exact (the email package would re-fold and re-encode them).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, formatdate

from gateway.smtp.checks import split_header


@dataclass(frozen=True)
class Failure:
    recipient: str
    status: str  # enhanced status code, e.g. "5.1.1" or "4.4.7"
    diagnostic: str  # the remote reply or our reason, one line
    remote_mta: str | None = None
    last_attempt: float | None = None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def build_dsn(
    *,
    hostname: str,
    domain: str,
    sender: str,
    queue_id: str,
    arrival: float,
    failures: Sequence[Failure],
    original: bytes,
) -> bytes:
    """A failure DSN to `sender` about `failures`, with the original message's header."""
    boundary = f"=_dsn_{secrets.token_hex(12)}"
    now = formatdate(localtime=False)
    lines = [
        f"Date: {now}",
        f"From: Mail Delivery System <mailer-daemon@{domain}>",
        f"To: <{sender}>",
        "Subject: Undelivered mail returned to sender / Message non distribue",
        f"Message-ID: <{secrets.token_hex(12)}.dsn@{hostname}>",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "",
        "This is a MIME-encapsulated delivery status notification.",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "",
        f"This is the mail gateway {hostname}.",
        "",
        "Your message could not be delivered to the following recipient(s):",
        "Votre message n'a pas pu etre remis au(x) destinataire(s) suivant(s) :",
        "",
    ]
    for f in failures:
        lines.append(f"  <{f.recipient}>: {_one_line(f.diagnostic)}")
    lines += [
        "",
        f"Queue id: {queue_id}",
        "",
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "",
        f"Reporting-MTA: dns; {hostname}",
        f"X-Queue-ID: {queue_id}",
        f"Arrival-Date: {format_datetime(datetime.fromtimestamp(arrival, UTC))}",
    ]
    for f in failures:
        lines += [
            "",
            f"Final-Recipient: rfc822; {f.recipient}",
            "Action: failed",
            f"Status: {f.status}",
        ]
        if f.remote_mta:
            lines.append(f"Remote-MTA: dns; {f.remote_mta}")
        diag = _one_line(f.diagnostic)
        kind = "smtp" if diag[:3].isdigit() else "x-mssgw"
        lines.append(f"Diagnostic-Code: {kind}; {diag}")
        if f.last_attempt:
            stamp = format_datetime(datetime.fromtimestamp(f.last_attempt, UTC))
            lines.append(f"Last-Attempt-Date: {stamp}")
    head, _ = split_header(original)
    lines += [
        "",
        f"--{boundary}",
        "Content-Type: text/rfc822-headers",
        "",
    ]
    out = "\r\n".join(lines).encode("utf-8") + b"\r\n" + head.rstrip(b"\r\n") + b"\r\n"
    out += f"\r\n--{boundary}--\r\n".encode()
    return out
