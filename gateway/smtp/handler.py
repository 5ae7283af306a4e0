"""The SMTP session logic of the submission and relay listeners (aiosmtpd handler hooks).

Submission (our users): TLS first (STARTTLS or implicit), then AUTH PLAIN/LOGIN with the mailbox
address and password, AUTH OAUTHBEARER/XOAUTH2 with a Pro Santé Connect access token when
[oidc] is configured (gateway.oidc), or AUTH EXTERNAL with a client certificate of our CA for APP
mailboxes; the envelope sender and the From: header must be the authenticated mailbox.
Relay (trust-space operators): STARTTLS with a client certificate that chains to a trust anchor,
is not revoked and whose subject is the DN the whitelist lists for the sender's domain; only our
own mailboxes are valid recipients. Refusals happen at RCPT (or DATA), with the reason.

Everything accepted passes through the worker's `Pipeline.process` and is stored durably
(`Gateway.deliver`) before the 250.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from aiosmtpd.smtp import MISSING, AuthResult, Envelope
from cryptography import x509

from gateway import maillog, pipeline, resources
from gateway.directory import MailboxKind
from gateway.directory.auth import AuthReason
from gateway.oidc import sasl
from gateway.smtp import replies
from gateway.smtp.checks import (
    MAX_MIME_DEPTH,
    Headers,
    domain_of,
    has_bare_cr_or_lf,
    mime_depth,
    read_headers,
)
from gateway.smtp.gateway import Gateway
from gateway.smtp.protocol import NULL_SENDER, GatewaySession, GatewaySMTP, offer_pipelining
from gateway.smtp.replies import Reply
from gateway.store.queue import new_queue_id

log = logging.getLogger("mssgw.smtp")


@dataclass(frozen=True)
class PeerCheck:
    """What the relay learnt from the peer's certificate."""

    ok: bool
    reason: str
    subject_dn: str = ""


def _ip(session: GatewaySession) -> str:
    peer = session.peer
    return str(peer[0]) if isinstance(peer, tuple) else str(peer or "")


def _auth(session: GatewaySession) -> str | None:
    return session.mailbox.address if session.mailbox is not None else None


def _sender(envelope: Envelope) -> str:
    s = envelope.mail_from or ""
    return "" if s == NULL_SENDER else s.lower()


class BaseHandler:
    channel: pipeline.Channel = "submission"

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    # --- EHLO / MAIL / RCPT -------------------------------------------------------------------

    async def handle_MAIL(
        self,
        server: GatewaySMTP,
        session: GatewaySession,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        sender = "" if address == NULL_SENDER else address.lower()
        refusal = await self.check_sender(session, sender)
        if refusal is not None:
            maillog.smtp(self.channel, str(refusal), stage="mail", peer=_ip(session),
                         auth=_auth(session), sender=sender)
            return str(refusal)
        session.mail_size = None
        for opt in mail_options:
            key, _, value = opt.partition("=")
            if key == "SIZE" and value.isdigit():
                session.mail_size = int(value)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self,
        server: GatewaySMTP,
        session: GatewaySession,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        rcpt = address.lower()
        limit = self.gw.size_limit(domain_of(rcpt))
        refusal: Reply | None
        if len(envelope.rcpt_tos) >= self.gw.config.smtp.max_recipients:
            refusal = replies.too_many_recipients(self.gw.config.smtp.max_recipients)
        elif session.mail_size is not None and session.mail_size > limit:
            refusal = replies.too_big(limit, domain_of(rcpt))
        else:
            refusal = await self.check_recipient(session, _sender(envelope), rcpt)
        if refusal is not None:
            maillog.smtp(self.channel, str(refusal), stage="rcpt", peer=_ip(session),
                         auth=_auth(session), sender=_sender(envelope), recipients=[rcpt])
            return str(refusal)
        envelope.rcpt_tos.append(rcpt)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def check_sender(self, session: GatewaySession, sender: str) -> Reply | None:
        raise NotImplementedError

    async def check_recipient(
        self, session: GatewaySession, sender: str, rcpt: str
    ) -> Reply | None:
        raise NotImplementedError

    def check_headers(self, session: GatewaySession, headers: Headers) -> Reply | None:
        return None

    # --- DATA ---------------------------------------------------------------------------------

    async def handle_DATA(
        self, server: GatewaySMTP, session: GatewaySession, envelope: Envelope
    ) -> str:
        session.queue_id = None
        reply = await self.data(server, session, envelope)
        maillog.smtp(self.channel, reply, qid=session.queue_id, peer=_ip(session),
                     auth=_auth(session), sender=_sender(envelope),
                     recipients=envelope.rcpt_tos, size=len(envelope.original_content or b""))
        return reply

    async def data(
        self, server: GatewaySMTP, session: GatewaySession, envelope: Envelope
    ) -> str:
        """The reply to DATA (its line in the mail log is written by `handle_DATA`)."""
        data = envelope.original_content or b""
        sender = _sender(envelope)
        rcpts = tuple(envelope.rcpt_tos)
        if has_bare_cr_or_lf(data):
            return str(replies.smuggling())
        for domain in {domain_of(r) for r in rcpts}:
            limit = self.gw.size_limit(domain)
            if len(data) > limit:
                return str(replies.too_big(limit, domain))
        if mime_depth(data) > MAX_MIME_DEPTH:
            log.info("refused data peer=%s from=<%s>: MIME nesting over %d",
                     _ip(session), sender, MAX_MIME_DEPTH)
            return str(replies.too_deep(MAX_MIME_DEPTH))
        # The real size against each local recipient's quota. One recipient without room
        # defers the whole message (DATA has one reply): the client retries the others too.
        full = await self.gw.check_quotas(rcpts, len(data))
        if full is not None:
            return str(full)
        try:
            headers = read_headers(data)
        except Exception:  # the email parser is lenient; this is belt and braces
            return str(Reply(550, "5.6.0", "message refused: its header cannot be parsed"))
        refusal = self.check_headers(session, headers) or await self.gw.check_thread(
            session.mailbox, headers
        )
        if refusal is not None:
            return str(refusal)
        qid = session.queue_id = new_queue_id()
        message = pipeline.Message(
            queue_id=qid,
            sender=sender,
            recipients=rcpts,
            data=self.received(server, session, qid, rcpts) + data,
            channel=self.channel,
            authenticated=session.mailbox.address if session.mailbox else None,
            peer=_ip(session),
        )
        try:
            outcome = await self.gw.pipeline.process(message)
            await self.gw.deliver(message, outcome, headers, sender_mailbox=session.mailbox)
        except TimeoutError as exc:  # the process pool's deadline: the client retries later
            log.error("queue id %s: not processed in time: %s", qid, exc)
            return str(replies.temporary_failure(qid))
        except RecursionError:  # a structure mime_depth let through: retrying cannot help
            log.error("queue id %s: refused: too deeply nested to process", qid)
            return str(replies.too_deep(MAX_MIME_DEPTH))
        except Exception as exc:
            if resources.exhausted(exc):  # out of descriptors, memory, disk: one line
                log.error("queue id %s: could not process or store the message: %s", qid,
                          resources.describe(exc))
            else:
                log.exception("queue id %s: could not process or store the message", qid)
            return str(replies.temporary_failure(qid))
        return replies.ok(f"Ok: queued as {qid}")

    def received(
        self, server: GatewaySMTP, session: GatewaySession, qid: str, rcpts: tuple[str, ...]
    ) -> bytes:
        """The trace header (RFC 5321 4.4), protocol names per RFC 3848."""
        tls = session.ssl_object
        proto = "ESMTP" if session.extended_smtp else "SMTP"
        if tls is not None:
            proto += "S"
        if session.mailbox is not None:
            proto += "A"
        helo = session.host_name or "unknown"
        if not helo.isprintable():
            helo = "".join(c for c in helo if c.isprintable())
        helo = helo[:100]
        lines = [
            f"Received: from {helo} ([{_ip(session)}])",
            f"\tby {self.gw.config.gateway.hostname} (mssgw) with {proto} id {qid}",
        ]
        if tls is not None:
            cipher = tls.cipher()
            if cipher:
                lines.append(f"\t(version={cipher[1]} cipher={cipher[0]})")
        if len(rcpts) == 1:
            lines.append(f"\tfor <{rcpts[0]}>")
        lines[-1] += f"; {_date_now()}"
        return ("\r\n".join(lines) + "\r\n").encode("utf-8", "replace")


_date_cache: tuple[int, str] = (0, "")


def _date_now() -> str:
    """The RFC 5322 date of now, formatted once per second (every message carries one)."""
    global _date_cache
    now = time.time()
    if int(now) != _date_cache[0]:
        _date_cache = (int(now), format_datetime(datetime.fromtimestamp(int(now), UTC)))
    return _date_cache[1]


class SubmissionHandler(BaseHandler):
    channel: pipeline.Channel = "submission"

    async def handle_EHLO(
        self,
        server: GatewaySMTP,
        session: GatewaySession,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        responses = offer_pipelining(responses)
        hidden = set()
        if session.ssl_object is not None and not session.ssl_object.getpeercert(
            binary_form=True
        ):
            hidden.add("EXTERNAL")  # only makes sense with a client certificate
        if self.gw.token_logins is None:
            hidden.update(TOKEN_MECHANISMS)  # no [oidc] issuer: no token logins
        if not hidden:
            return responses
        return [_without_mechanisms(r, hidden) if r.startswith("250-AUTH") else r
                for r in responses]

    async def check_sender(self, session: GatewaySession, sender: str) -> Reply | None:
        mailbox = session.mailbox
        assert mailbox is not None  # aiosmtpd's auth_required runs first
        refusal = self.gw.rate_limit(_ip(session), mailbox.address)
        if refusal is not None:
            return refusal
        if sender != mailbox.address:
            return replies.sender_not_yours(sender, mailbox.address)
        return None

    async def check_recipient(
        self, session: GatewaySession, sender: str, rcpt: str
    ) -> Reply | None:
        return await self.gw.check_recipient(session.mailbox, rcpt, relay=False,
                                             size=session.mail_size or 0)

    def check_headers(self, session: GatewaySession, headers: Headers) -> Reply | None:
        mailbox = session.mailbox
        assert mailbox is not None
        if not headers.from_addresses:
            return Reply(550, "5.6.0", "message refused: it has no From: header")
        if headers.from_addresses != [mailbox.address]:
            shown = ", ".join(headers.from_addresses)
            return Reply(
                550,
                "5.7.1",
                f"From: {shown} is not your mailbox: you are authenticated as <{mailbox.address}>",
            )
        return None

    # --- AUTH: the mechanisms override aiosmtpd's built-ins to check asynchronously -----------

    async def auth_PLAIN(self, server: GatewaySMTP, args: list[str]) -> AuthResult:
        blob = await self._initial(server, args)
        if blob is None:
            return AuthResult(success=False, handled=True)
        parts = blob.split(b"\0")
        if len(parts) != 3:
            await server.push("501 5.5.2 AUTH PLAIN expects authzid NUL login NUL password")
            return AuthResult(success=False, handled=True)
        authz, login, password = parts
        if authz and authz != login:
            return AuthResult(
                success=False, handled=False,
                message="535 5.7.8 authentication failed: "
                "acting for another mailbox is not allowed",
            )
        return await self._check(server, login, password)

    async def auth_LOGIN(self, server: GatewaySMTP, args: list[str]) -> AuthResult:
        if len(args) > 1:
            login = self._b64(args[1])
            if login is None:
                await server.push("501 5.5.2 cannot decode base64")
                return AuthResult(success=False, handled=True)
        else:
            got = await server.challenge_auth("Username:")
            if got is MISSING:
                return AuthResult(success=False, handled=True)
            login = bytes(got)  # type: ignore[arg-type]
        password = await server.challenge_auth("Password:")
        if password is MISSING:
            return AuthResult(success=False, handled=True)
        return await self._check(server, login, bytes(password))  # type: ignore[arg-type]

    async def auth_EXTERNAL(self, server: GatewaySMTP, args: list[str]) -> AuthResult:
        """SASL EXTERNAL (RFC 4422 appendix A): the TLS client certificate is the credential.

        Only for APP (software) mailboxes; the certificate must be one of our CA's, valid and not
        revoked, and name the mailbox in its subjectAltName e-mail address."""
        session = server.session
        assert session is not None
        blob = await self._initial(server, args)
        if blob is None:
            return AuthResult(success=False, handled=True)
        tls = session.ssl_object
        if tls is None or not tls.getpeercert(binary_form=True):
            return self._refused("no TLS client certificate was presented")
        result = await asyncio.to_thread(self.gw.verify_client_certificate, tls)
        if not result.ok:
            return self._refused(f"the client certificate is not acceptable: {result.reason}")
        address = _certificate_email(result.certificate)
        if address is None:
            return self._refused("the client certificate names no e-mail address")
        if blob and blob.decode("utf-8", "replace").lower() != address:
            return self._refused("acting for another mailbox is not allowed")
        mailbox = await self.gw.mailbox(address)
        if mailbox is None or mailbox.kind is not MailboxKind.APP or not mailbox.active:
            maillog.login("smtp", "failed", user=address, peer=_ip(session),
                          mechanism="certificate", reason="not an active APP mailbox")
            return self._refused(f"<{address}> is not an active applicative (APP) mailbox")
        session.mailbox = mailbox
        maillog.login("smtp", "ok", user=address, peer=_ip(session), mechanism="certificate")
        return AuthResult(success=True, auth_data=mailbox)

    async def auth_OAUTHBEARER(self, server: GatewaySMTP, args: list[str]) -> AuthResult:
        """SASL OAUTHBEARER (RFC 7628) with an access token of the [oidc] provider."""
        return await self._token(server, args, sasl.Mechanism.OAUTHBEARER)

    async def auth_XOAUTH2(self, server: GatewaySMTP, args: list[str]) -> AuthResult:
        """SASL XOAUTH2 (Google's mechanism, which many clients speak) with the same tokens."""
        return await self._token(server, args, sasl.Mechanism.XOAUTH2)

    async def _token(
        self, server: GatewaySMTP, args: list[str], mechanism: sasl.Mechanism
    ) -> AuthResult:
        session = server.session
        assert session is not None
        logins = self.gw.token_logins
        if logins is None:
            await server.push("504 5.5.4 Unrecognized authentication type")
            return AuthResult(success=False, handled=True)
        blob = await self._initial(server, args)
        if blob is None:
            return AuthResult(success=False, handled=True)
        try:
            response = sasl.parse(mechanism, blob)
        except sasl.SaslError as exc:
            await server.push(f"501 5.5.2 malformed {mechanism} response: {exc}")
            return AuthResult(success=False, handled=True)
        result = await logins.login(response, _ip(session), "smtp")
        maillog.login("smtp", "ok" if result.ok else "locked" if result.retry_after is not None
                      else "failed", user=result.mailbox.address if result.mailbox else "-",
                      peer=_ip(session), mechanism="token",
                      reason=None if result.ok else result.message)
        if result.ok:
            session.mailbox = result.mailbox
            return AuthResult(success=True, auth_data=result.mailbox)
        if result.retry_after is not None:
            return AuthResult(success=False, handled=False, message=_locked_out(result.retry_after))
        if result.temporary:
            return AuthResult(
                success=False, handled=False,
                message=f"454 4.7.0 temporary authentication failure: {result.message}",
            )
        # RFC 7628 3.2.2: the error goes in a challenge; the client answers it (a lone kvsep, or
        # an empty line for XOAUTH2) and then gets the failure ('*': aiosmtpd answered 501).
        if result.challenge is not None and await server.challenge_auth(
            result.challenge
        ) is MISSING:
            return AuthResult(success=False, handled=True)
        return self._refused(result.message)

    @staticmethod
    def _refused(why: str) -> AuthResult:
        return AuthResult(
            success=False, handled=False, message=f"535 5.7.8 authentication failed: {why}"
        )

    @staticmethod
    def _b64(text: str) -> bytes | None:
        if text == "=":
            return b""
        try:
            return base64.b64decode(text.encode(), validate=True)
        except (binascii.Error, ValueError):
            return None

    async def _initial(self, server: GatewaySMTP, args: list[str]) -> bytes | None:
        """The initial response (inline or after an empty challenge); None when already
        answered (bad base64, or the client aborted with '*')."""
        if len(args) > 1:
            blob = self._b64(args[1])
            if blob is None:
                await server.push("501 5.5.2 cannot decode base64")
            return blob
        got = await server.challenge_auth("")
        return None if got is MISSING else bytes(got)  # type: ignore[arg-type]

    async def _check(self, server: GatewaySMTP, login: bytes, password: bytes) -> AuthResult:
        session = server.session
        assert session is not None
        address = login.decode("utf-8", "replace").strip().lower()
        result = await self.gw.authenticator.authenticate(
            address, password.decode("utf-8", "replace"), _ip(session)
        )
        maillog.login("smtp", "ok" if result.ok else "locked" if result.retry_after is not None
                      else "failed", user=address, peer=_ip(session), mechanism="password",
                      reason=None if result.ok else str(result.reason))
        if result.ok:
            session.mailbox = result.mailbox
            return AuthResult(success=True, auth_data=result.mailbox)
        if result.retry_after is not None:
            return AuthResult(success=False, handled=False, message=_locked_out(result.retry_after))
        if result.reason is AuthReason.PASSWORD_NOT_ALLOWED:
            return self._refused(
                "this mailbox does not log in with a password: use a Pro Sante Connect token "
                "(AUTH OAUTHBEARER or XOAUTH2)"
            )
        return AuthResult(
            success=False, handled=False,
            message="535 5.7.8 authentication failed: wrong address or password, "
            "or the mailbox is suspended",
        )


class RelayHandler(BaseHandler):
    channel: pipeline.Channel = "relay"

    async def handle_EHLO(
        self,
        server: GatewaySMTP,
        session: GatewaySession,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        return offer_pipelining([r for r in responses if not r.startswith("250-AUTH")])

    async def handle_AUTH(
        self, server: GatewaySMTP, session: GatewaySession, envelope: Envelope, args: list[str]
    ) -> str:
        return (
            "502 5.5.1 AUTH is not offered on the relay port: trust-space peers are identified "
            "by their TLS client certificate; users submit mail on the submission port"
        )

    async def peer(self, session: GatewaySession) -> PeerCheck:
        if session.peer_check is None:
            tls = session.ssl_object
            if tls is None:
                check = PeerCheck(False, "the session is not encrypted (STARTTLS first)")
            elif not tls.getpeercert(binary_form=True):
                check = PeerCheck(
                    False,
                    "no TLS client certificate was presented; trust-space operators must "
                    "present their certificate",
                )
            else:
                result = await asyncio.to_thread(self.gw.verify_peer_certificate, tls)
                check = PeerCheck(result.ok, result.reason, result.subject_dn)
            session.peer_check = check
            log.info("relay peer=%s certificate: %s %s", _ip(session), check.reason,
                     check.subject_dn)
        assert isinstance(session.peer_check, PeerCheck)
        return session.peer_check

    async def check_sender(self, session: GatewaySession, sender: str) -> Reply | None:
        # No rate limit here: peers are operators identified by certificate, whose volume is
        # legitimately high; a peer without a valid certificate is refused at RCPT anyway.
        return None

    async def check_recipient(
        self, session: GatewaySession, sender: str, rcpt: str
    ) -> Reply | None:
        peer = await self.peer(session)
        if not peer.ok:
            return Reply(550, "5.7.1", f"relay refused: client certificate: {peer.reason}")
        refusal = await self.gw.check_peer_sender(sender, peer.subject_dn)
        if refusal is not None:
            return refusal
        return await self.gw.check_recipient(None, rcpt, relay=True,
                                             size=session.mail_size or 0)

    def check_headers(self, session: GatewaySession, headers: Headers) -> Reply | None:
        """A peer's mail may not show one of our own addresses as its author: the envelope
        sender is checked against the peer's certificate, the header the reader sees must not
        undo that."""
        for field, addresses in (("From", headers.from_addresses),
                                 ("Sender", headers.sender_addresses)):
            for address in addresses:
                if self.gw.is_local(domain_of(address)):
                    return replies.peer_claims_our_address(field, address)
        return None


TOKEN_MECHANISMS = frozenset(m.value for m in sasl.Mechanism)


def _without_mechanisms(line: str, hidden: set[str]) -> str:
    """An EHLO `250-AUTH ...` line without the `hidden` mechanisms."""
    return " ".join(w for w in line.split(" ") if w not in hidden)


def _locked_out(retry_after: float) -> str:
    return (f"454 4.7.0 too many failed logins for this account or address; "
            f"try again in {max(1, round(retry_after))} s")


def _certificate_email(cert: x509.Certificate | None) -> str | None:
    if cert is None:
        return None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    emails = san.get_values_for_type(x509.RFC822Name)
    return emails[0].lower() if emails else None


def make_handler(gw: Gateway, kind: str) -> Any:
    return RelayHandler(gw) if kind == "relay" else SubmissionHandler(gw)
