"""What the SMTP sessions of one worker process share: directory, policy, storage.

`Gateway` answers the policy questions (may this sender write to that recipient?) and turns a
pipeline outcome into one durable commit (local copies, queue entries, DSNs) through the
`Intake`. The process's root (`gateway.runtime.Runtime.smtp`) builds it from its stores.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gateway import maillog, pipeline
from gateway.directory import Mailbox, MailboxKind, own_domains
from gateway.smtp import replies
from gateway.smtp.checks import Headers, domain_of
from gateway.smtp.conversations import Contact
from gateway.smtp.dsn import Failure, build_dsn
from gateway.smtp.limits import RATE_LIMITS_FILE, RateLimiter, SharedRateLimits
from gateway.smtp.replies import Reply
from gateway.store.queue import Entry, new_queue_id

if TYPE_CHECKING:
    from gateway.runtime import Runtime

log = logging.getLogger("mssgw.smtp")

# A mailbox looked up is remembered this long: a suspension reaches RCPT checks within it
# (logins see it at once: the Authenticator reads the state on every AUTH).
MAILBOX_CACHE_TTL = 2.0
QUOTA_CACHE_TTL = 5.0  # seconds a mailbox's usage read is trusted...
QUOTA_NEAR = 0.9  # ...while it stays below this share of its quota


class Gateway:
    def __init__(self, runtime: Runtime) -> None:
        config = self.config = runtime.config
        self.directory = runtime.directory
        self.authenticator = runtime.authenticator
        # SASL OAUTHBEARER/XOAUTH2 (None without an [oidc] issuer); lockouts as for passwords.
        self.token_logins = runtime.token_logins
        self.conversations = runtime.conversations
        self.pipeline = runtime.pipeline
        self.intake = runtime.intake
        self.queue = runtime.outbound_queue
        self.mail_stores = runtime.mail_stores  # for the quotas' usage
        limits = config.smtp.rate_limit_client, config.smtp.rate_limit_account
        # One table for every worker process of this gateway (see gateway.smtp.limits).
        self.rate_limits = (
            SharedRateLimits(config.database_path.with_name(RATE_LIMITS_FILE))
            if max(limits) > 0 else None
        )
        self.client_limit = RateLimiter(self.rate_limits, "client", limits[0])
        self.account_limit = RateLimiter(self.rate_limits, "account", limits[1])
        self.local_domains = set(own_domains(config))
        self._mailboxes: dict[str, tuple[float, Mailbox | None]] = {}
        self._usage: dict[str, tuple[float, int]] = {}  # address -> (when read, octets used)

    def close(self) -> None:
        if self.rate_limits is not None:
            self.rate_limits.close()

    # --- lookups --------------------------------------------------------------------------------

    def is_local(self, domain: str) -> bool:
        return domain in self.local_domains or self.directory.is_own_domain(domain)

    async def mailbox(self, address: str) -> Mailbox | None:
        now = time.monotonic()
        hit = self._mailboxes.get(address)
        if hit is not None and hit[0] > now:
            return hit[1]
        mailbox = self.directory.get(address)
        if len(self._mailboxes) > 50_000:
            self._mailboxes.clear()
        self._mailboxes[address] = (now + MAILBOX_CACHE_TTL, mailbox)
        return mailbox

    def size_limit(self, domain: str) -> int:
        s = self.config.smtp
        return int(s.domain_size_limits.get(domain, s.max_message_size))

    def rate_limit(self, client_ip: str, account: str | None) -> Reply | None:
        wait = self.client_limit.hit(client_ip)
        if wait is not None:
            return replies.rate_limited(f"client address {client_ip}", wait)
        if account is not None:
            wait = self.account_limit.hit(account)
            if wait is not None:
                return replies.rate_limited(f"<{account}>", wait)
        return None

    # --- policy ---------------------------------------------------------------------------------

    async def check_recipient(
        self, sender: Mailbox | None, rcpt: str, *, relay: bool, size: int = 0
    ) -> Reply | None:
        """May `sender` (our authenticated mailbox; None for the relay) write to `rcpt` a
        message of `size` octets (MAIL's SIZE=, 0 when not declared)?"""
        domain = domain_of(rcpt)
        target: Mailbox | None = None
        if self.is_local(domain):
            target = await self.mailbox(rcpt)
            if target is None:
                return replies.no_such_mailbox(rcpt)
            if not target.active:
                return replies.mailbox_disabled(rcpt)
            full = self.check_quota(target, size)
            if full is not None:
                return full
        elif relay:
            return replies.relay_denied(rcpt)
        elif not self.directory.is_trusted_domain(domain):
            return replies.outside_trust_space(rcpt, domain)
        if sender is not None and sender.kind is MailboxKind.PATIENT:
            return self._patient_may_write(sender, rcpt, target)
        return None

    def check_quota(self, mailbox: Mailbox, size: int) -> Reply | None:
        """Room for `size` more octets in `mailbox` ([quota] for its kind)? A message larger
        than the whole quota never fits (552 5.2.2); one that does not fit now may later
        (452 4.2.2: the sender's server retries). The usage read is kept a few seconds unless
        the mailbox is near its quota, so busy mailboxes cost no index read per message."""
        limit = self.config.quota.limit(mailbox.kind.value)
        if not limit:
            return None
        if size > limit:
            return replies.over_quota(mailbox.address, limit)
        now = time.monotonic()
        cached = self._usage.get(mailbox.address)
        if cached is None or now - cached[0] > QUOTA_CACHE_TTL or \
                cached[1] + size > limit * QUOTA_NEAR:
            if len(self._usage) > 50_000:
                self._usage.clear()
            cached = (now, self.mail_stores.usage(mailbox.address))
            self._usage[mailbox.address] = cached
        if cached[1] + size > limit:
            return replies.mailbox_full(mailbox.address)
        return None

    async def check_quotas(self, recipients: Sequence[str], size: int) -> Reply | None:
        """At DATA, with the message's real size: the first local recipient without room."""
        for rcpt in recipients:
            if not self.is_local(domain_of(rcpt)):
                continue
            target = await self.mailbox(rcpt)
            if target is not None:
                full = self.check_quota(target, size)
                if full is not None:
                    return full
                cached = self._usage.get(target.address)
                if cached is not None:  # count it until the next read of the index
                    self._usage[target.address] = (cached[0], cached[1] + size)
        return None

    def _patient_may_write(
        self, patient: Mailbox, rcpt: str, target: Mailbox | None
    ) -> Reply | None:
        is_patient = (target is not None and target.kind is MailboxKind.PATIENT) or (
            target is None and domain_of(rcpt).startswith("patient.")
        )
        if is_patient:
            return Reply(550, "5.7.1", f"<{rcpt}>: patients cannot write to other patients")
        if target is not None and target.is_pharmacy:
            return None
        if target is None and not self.is_local(domain_of(rcpt)):
            # Another operator's mailbox: the directory's remote entries say which ones are
            # pharmacies (a patient may send a prescription to any pharmacy of the space).
            remote = self.directory.get_remote(rcpt)
            if remote is not None and remote.takes_prescriptions:
                return None
        if self.conversations.has_written(rcpt, patient.address):
            return None
        return Reply(
            550,
            "5.7.1",
            f"<{rcpt}>: a patient may write only to a professional or structure who wrote to "
            "them first, or to a pharmacy",
        )

    async def check_thread(self, sender: Mailbox | None, headers: Headers) -> Reply | None:
        """A patient may not write into a thread the professional closed (FIN)."""
        if sender is None or sender.kind is not MailboxKind.PATIENT:
            return None
        if self.conversations.closed_thread(sender.address, headers.references):
            return Reply(
                550,
                "5.7.1",
                "the professional closed this conversation (X-MSS-MES: FIN); "
                "replies to it are not possible",
            )
        return None

    async def check_peer_sender(self, sender: str, subject_dn: str) -> Reply | None:
        """Relay: is the sender's domain in the trust space, with this certificate's DN?"""
        if not sender:
            # A bounce: it names no domain, so any whitelisted operator may send it.
            ok = await asyncio.to_thread(self._dn_of_any_operator, subject_dn)
            if ok:
                return None
            return Reply(550, "5.7.1", f"relay refused: certificate subject {subject_dn!r} is "
                         "not the operator of any trust-space domain")
        domain = domain_of(sender)
        if self.is_local(domain):
            return Reply(550, "5.7.1", f"relay refused: <{sender}> is one of our own domains; "
                         "peers cannot send in its name")
        if not self.directory.is_trusted_domain(domain):
            return replies.outside_trust_space(sender, domain)
        if not self.directory.peer_certificate_matches(domain, subject_dn):
            expected = self.directory.expected_operator_dn(domain) or "(none listed)"
            return Reply(
                550,
                "5.7.1",
                f"relay refused: the certificate subject {subject_dn!r} is not the operator DN "
                f"the whitelist lists for {domain} ({expected!r})",
            )
        return None

    def _dn_of_any_operator(self, subject_dn: str) -> bool:
        return any(
            self.directory.peer_certificate_matches(d.name, subject_dn)
            for d in self.directory.list_domains(ours=False)
        )

    # --- certificates (called in a thread) ----------------------------------------------------

    def verify_client_certificate(self, tls: ssl.SSLObject) -> Any:
        from gateway.pki.kinds import Purpose
        from gateway.pki.tls import verify_peer

        return verify_peer(self.config, tls, Purpose.CLIENT)

    def verify_peer_certificate(self, tls: ssl.SSLObject) -> Any:
        """A relay peer: operators present their server certificate as TLS client."""
        from gateway.pki.kinds import Purpose
        from gateway.pki.tls import verify_peer

        return verify_peer(self.config, tls, Purpose.SERVER)

    # --- delivery -------------------------------------------------------------------------------

    def plan(
        self, sender: str, recipients: Sequence[str], data: bytes, qid: str, kind: str = "message"
    ) -> tuple[list[tuple[str, bytes]], list[Entry]]:
        """Local copies (one per local recipient) and one queue entry for the rest."""
        local: list[tuple[str, bytes]] = []
        remote: list[str] = []
        for rcpt in recipients:
            if self.is_local(domain_of(rcpt)):
                local.append((rcpt, data))
            else:
                remote.append(rcpt)
        queued = [Entry(qid, sender, remote, data, kind)] if remote else []
        return local, queued

    def dsn_for(
        self, message: pipeline.Message, failures: Sequence[Failure]
    ) -> tuple[list[tuple[str, bytes]], list[Entry]]:
        """The DSN telling the message's sender about `failures` (nothing for a bounce)."""
        if not message.sender or not failures:
            return [], []
        data = build_dsn(
            hostname=self.config.gateway.hostname,
            domain=self.config.gateway.domain,
            sender=message.sender,
            queue_id=message.queue_id,
            arrival=time.time(),
            failures=failures,
            original=message.data,
        )
        return self.plan("", [message.sender], data, new_queue_id(), kind="dsn")

    async def deliver(
        self,
        message: pipeline.Message,
        outcome: pipeline.Outcome,
        headers: Headers,
        *,
        sender_mailbox: Mailbox | None = None,
    ) -> None:
        """Store the outcome durably (one commit), and note conversations with patients."""
        local: list[tuple[str, bytes]] = []
        queued: list[Entry] = []
        stored: list[tuple[str, str, list[str], int]] = []  # for the mail log, once committed
        for i, d in enumerate(outcome.deliveries):
            qid = message.queue_id if i == 0 else new_queue_id()
            sender = message.sender if d.sender is None else d.sender
            lo, qu = self.plan(sender, d.recipients, d.data, qid)
            local += lo
            queued += qu
            stored.append((qid, sender, [address for address, _ in lo], len(d.data)))
        if outcome.rejections:
            failures = [Failure(r.recipient, r.status, r.reason) for r in outcome.rejections]
            lo, qu = self.dsn_for(message, failures)
            local += lo
            queued += qu
        patients = [
            r for d in outcome.deliveries for r in d.recipients
            if domain_of(r) == self.config.gateway.patient_domain
        ]
        sender_is_patient = (
            sender_mailbox is not None and sender_mailbox.kind is MailboxKind.PATIENT
        )
        contact = None
        if patients and message.sender and not sender_is_patient:
            # Recorded by the group commit, with the rest of its batch (one transaction).
            contact = Contact(message.sender, tuple(patients), headers.message_id,
                              tuple(headers.references), headers.mss_fin)
        if local or queued:
            await self.intake.commit(local, queued, contact)
        elif contact is not None:
            await asyncio.to_thread(self.conversations.record_many, [contact])
        for qid, sender, rcpts, size in stored:
            if rcpts:
                maillog.delivered(qid, sender, rcpts, size)
        if outcome.rejections:
            maillog.bounce(message.queue_id, message.sender,
                           [r.recipient for r in outcome.rejections],
                           "; ".join(f"{r.status} {r.reason}" for r in outcome.rejections))
