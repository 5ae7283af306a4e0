"""The mail log: one line per SMTP transaction, delivery, relay attempt, bounce and login.

What Postfix's maillog is to its administrators: a stable line per event to grep, count and
follow a message by its queue id. Fields (only those that apply, in this order):

    event     smtp | delivery | relay | bounce | login
    result    accepted | refused | deferred (smtp); delivered (delivery);
              sent | deferred | failed | expired (relay); ok | failed | locked (login)
    listener  submission | relay | imap ...        qid       the queue id
    peer      the client's IP address              auth      the authenticated mailbox
    from, to  envelope addresses (to: comma-separated)
    size      bytes                                 delay     seconds since the message arrived
    status    the SMTP reply code and enhanced status   reason    why, for people
    relay     the peer's host:port (relay)          attempts  delivery attempts so far

Formats ([log] format): `kv` (key=value, values with spaces or quotes in double quotes,
control characters escaped: a line is always one line) or `json` (one object per line).
Destination ([log] mail): empty, with the rest of the log on stderr (the journal under
systemd); or a file, reopened when logrotate moves it away (as WatchedFileHandler does: no
signal and no copytruncate needed).

Each line is one write(2) of its own (O_APPEND for the file: the workers' lines stay whole and
in order), not a trip through `logging`: a LogRecord, the handlers' locks and the formatter
cost ~20 us a line, and a message makes two (its transaction, its delivery). In bench_smtp
that was 225k of the worker's 1,275k instructions per message (callgrind); written here, a
line costs ~4 us. Until `configure` is called (the CLI's commands, the tests' in-thread
servers) the lines go nowhere, as they did through an unconfigured `logging`.

No patient data: addresses are the only personal data written (a patient's address carries
their INS, as in every mail log); never a subject, a header or a body.
The events also count in gateway/metrics (one call here, one line where it happens).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from gateway import metrics
from gateway.config import Config

_format = "kv"


def configure(mail: str, fmt: str) -> None:
    """Where the lines go: `mail` empty -> with the rest of the log (stderr); else that file
    (its folder made if needed)."""
    global _format, _sink
    _format = fmt
    if _sink is not None:
        _sink.close()
    if not mail:
        _sink = _Stderr()
        return
    os.makedirs(os.path.dirname(mail) or ".", exist_ok=True)
    _sink = _File(mail)


class _Stderr:
    """Beside the other log lines, in their format (server._logging's)."""

    def write(self, line: str) -> None:
        now = time.time()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
        text = f"{stamp},{int(now % 1 * 1000):03d} {os.getpid()} mssgw.mail: {line}\n"
        with contextlib.suppress(OSError):  # stderr closed: no message fails for its log line
            os.write(2, text.encode("utf-8", "replace"))

    def close(self) -> None:
        pass


class _File:
    """A file opened for appending, reopened when it is no longer the one at its path."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1
        self.ident = (0, 0)
        self._open()

    def _open(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        st = os.fstat(fd)
        if self.fd >= 0:
            os.close(self.fd)
        self.fd, self.ident = fd, (st.st_dev, st.st_ino)

    def write(self, line: str) -> None:
        if _format == "json":
            text = line + "\n"
        else:
            now = time.time()
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
            text = f"{stamp}.{int(now % 1 * 1000):03d}Z mssgw[{os.getpid()}]: {line}\n"
        try:
            try:
                st = os.stat(self.path)
                moved = (st.st_dev, st.st_ino) != self.ident
            except FileNotFoundError:
                moved = True
            if moved:  # logrotate took it away: a new file at the path
                self._open()
            os.write(self.fd, text.encode("utf-8", "replace"))
        except OSError:  # a full or read-only disk: the message is not failed for its log line
            pass

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


_sink: _Stderr | _File | None = None


# A value is written bare when it is printable ASCII without spaces, quotes, '=' or '\\';
# otherwise in double quotes with '"' and '\\' escaped and any non-printable character
# (CR, LF, controls) escaped: a line is always one line, whatever a client sent.
_BARE = re.compile(r'[!#-<>-\[\]-~]+')
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _quote(value: str) -> str:
    if _BARE.fullmatch(value):
        return value
    value = value.replace("\\", "\\\\").replace('"', '\\"')
    if not value.isprintable():  # rare: checked at C speed, escaped character by character
        value = "".join(c if c.isprintable() else _ESCAPES.get(c, f"\\x{ord(c):02x}")
                        for c in value)
    return f'"{value}"'


def render(fields: dict[str, object], fmt: str = "kv") -> str:
    if fmt == "json":
        clean = {k: v for k, v in fields.items() if v is not None and v != ""}
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return json.dumps({"ts": stamp, "pid": os.getpid(), **clean}, ensure_ascii=False,
                          separators=(",", ":"), default=str)
    parts = []
    for key, value in fields.items():
        if value is None or value == "":
            continue
        text = value if type(value) is str else _text(value)
        parts.append(f"{key}={_quote(text)}")
    return " ".join(parts)


def _text(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def emit(event: str, **fields: object) -> None:
    if _sink is not None:
        _sink.write(render({"event": event, **fields}, _format))


def delay_of(qid: str | None, now: float | None = None) -> float | None:
    """Seconds since the message with this queue id arrived (the id encodes its arrival)."""
    if not qid or len(qid) < 13:
        return None
    try:
        arrived = int(qid[:13], 16) / 1e6
    except ValueError:
        return None
    return max(0.0, (time.time() if now is None else now) - arrived)


def _status(reply: str) -> tuple[str, str]:
    """'550 5.7.1 text' -> ('550 5.7.1', 'text')."""
    parts = reply.split(" ", 2)
    if len(parts) >= 2 and parts[0].isdigit() and parts[1][:1].isdigit() and "." in parts[1]:
        return f"{parts[0]} {parts[1]}", parts[2] if len(parts) > 2 else ""
    code, _, text = reply.partition(" ")
    return code, text


def configure_from(config: Config) -> None:
    configure(str(config.path(config.log.mail)) if config.log.mail else "", config.log.format)


# --- the events ------------------------------------------------------------------------------


def _addresses(addresses: Sequence[str]) -> str:
    return ",".join(f"<{a}>" for a in addresses)


def smtp(
    listener: str, reply: str, *, qid: str | None = None, peer: str = "",
    auth: str | None = None, sender: str | None = None, recipients: Sequence[str] = (),
    size: int | None = None, stage: str = "data",
) -> None:
    """The end of an SMTP transaction (the reply to DATA), or a MAIL or RCPT refused."""
    status, text = _status(reply)
    accepted = reply.startswith("2")
    result = "accepted" if accepted else "deferred" if reply.startswith("4") else "refused"
    if accepted:
        metrics.message_accepted(listener)
    else:
        metrics.message_refused(listener, metrics.refusal_reason(reply))
    emit("smtp", result=result, stage=None if accepted else stage, listener=listener, qid=qid,
         peer=peer, auth=auth, **{"from": None if sender is None else f"<{sender}>"},
         to=_addresses(recipients), size=size, delay=delay_of(qid) if accepted else None,
         status=status, reason=None if accepted else text)


def delivered(qid: str, sender: str, recipients: Sequence[str], size: int,
              kind: str = "message") -> None:
    """Copies stored durably into local mailboxes (one line per recipient)."""
    metrics.delivered("local", len(recipients))
    for rcpt in recipients:
        emit("delivery", result="delivered", qid=qid, kind=None if kind == "message" else kind,
             **{"from": f"<{sender}>"}, to=f"<{rcpt}>", size=size, delay=delay_of(qid),
             relay="local")


def relay(qid: str, recipient: str, result: str, *, relay_to: str | None, status: str | None,
          reason: str | None, attempts: int, kind: str = "message") -> None:
    """One recipient's delivery attempt to a peer: sent, deferred, failed or expired."""
    metrics.relay_attempt(result)  # type: ignore[arg-type]
    if result == "sent":
        metrics.delivered("relay")
    emit("relay", result=result, qid=qid, kind=None if kind == "message" else kind,
         to=f"<{recipient}>", relay=relay_to, status=status, attempts=attempts,
         delay=delay_of(qid), reason=None if result == "sent" else reason)


def bounce(qid: str, sender: str, failed: Sequence[str], reason: str | None = None) -> None:
    """A DSN sent to `sender` about `failed` recipients of message `qid` (none for a message
    from the null sender, itself a bounce: no bounce loops)."""
    if sender:
        metrics.bounced()
    emit("bounce", result="dsn" if sender else "dropped", qid=qid, to=f"<{sender}>",
         recipients=_addresses(failed), reason=reason)


def login(protocol: str, result: str, *, user: str, peer: str, mechanism: str,
          reason: str | None = None) -> None:
    """A login attempt: result ok, failed or locked (refused by a lockout)."""
    metrics.login(protocol, result == "ok")  # type: ignore[arg-type]
    if result == "locked":
        metrics.lockout(protocol)  # type: ignore[arg-type]
    emit("login", result=result, protocol=protocol, user=user, peer=peer,
         mechanism=mechanism, reason=reason)
