"""The text of one MIME part, decoded: shared by IMAP SEARCH and the prescription flows.

Mail from outside may declare a charset Python does not know, or carry a broken transfer
encoding; neither may stop a search or a flow, so both fall back rather than raise.
"""

from __future__ import annotations

from email.message import Message


def part_text(part: Message) -> str | None:
    """The decoded text of a non-multipart `part`, or None when it has no usable payload."""
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # broken transfer encoding: there is no text to read
        return None
    if not isinstance(payload, bytes):
        return None
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except LookupError:  # an unknown charset name
        return payload.decode("utf-8", "replace")
