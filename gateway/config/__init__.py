"""Load `config.toml` into typed sections.

Each capability owns one section dataclass below; unknown keys and wrong types are refused with a
message naming the key, so a typo in the configuration never silently falls back to a default.
Relative paths are resolved against the folder holding the configuration file.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from gateway.errors import ConfigError

DEFAULT_CONFIG = "config.toml"


@dataclass(frozen=True)
class GatewaySection:
    domain: str = "mssgw.localhost"
    hostname: str = "mx.mssgw.localhost"
    product: str = "mssgw/0.1"
    workers: int = 0
    # Seconds one call into a worker's process pool (signatures, PDF, document checks of one
    # message) may run; past it the message gets a temporary failure (451) and the process is
    # replaced. 0: no limit.
    pool_call_timeout: int = 120

    @property
    def patient_domain(self) -> str:
        return f"patient.{self.domain}"


@dataclass(frozen=True)
class StorageSection:
    database: str = "var/gateway.db"
    mailboxes: str = "mailboxes"
    queue: str = "var/queue"
    certs: str = "certs"
    audit_log: str = "var/audit.log"


@dataclass(frozen=True)
class TLSSection:
    profile: str = "default"


@dataclass(frozen=True)
class PKISection:
    organisation: str = "mssgw"  # O= of every certificate we issue
    country: str = "FR"
    ca_key_bits: int = 3072  # RSA; the MSSanté TLS 1.2 suites are ECDHE-RSA
    key_bits: int = 2048
    days: int = 1095  # default validity of issued certificates (IGC-Santé: 3 years)
    crl_days: int = 7  # nextUpdate of published CRLs
    ca_passphrase_file: str = ""  # CA keys encrypted with its first line ($MSSGW_CA_PASSPHRASE)
    # CRL distribution point: the URL named in every certificate we issue (<base>/<ca>.crl),
    # and the plain-HTTP listener of `mssgw serve` that answers it ("" for either: none).
    crl_base_url: str = ""
    crl_listen: str = ""


@dataclass(frozen=True)
class SMTPSection:
    submission: str = "127.0.0.1:10587"
    submission_tls: str = "127.0.0.1:10465"
    relay: str = "127.0.0.1:10025"
    max_message_size: int = 25 * 1024 * 1024
    max_recipients: int = 100
    # Per recipient domain size limits (bytes), e.g. {"patient.mssgw.localhost" = 26214400}.
    domain_size_limits: dict[str, int] = field(default_factory=dict)
    rate_limit_client: int = 600  # messages per minute per client address (0: no limit)
    rate_limit_account: int = 300  # messages per minute per authenticated mailbox (0: no limit)
    timeout: int = 300  # idle seconds before a session is closed
    # Outbound queue: retries back off from retry_initial, doubling up to retry_max (seconds);
    # after lifetime seconds the sender gets a DSN.
    queue_retry_initial: int = 60
    queue_retry_max: int = 3600
    queue_lifetime: int = 5 * 24 * 3600
    queue_scan_interval: int = 1
    queue_concurrency: int = 10
    # Where to relay each trust-space domain: {"example.fr" = "mx.example.fr:25"}; a domain
    # without a route is reached at its own name on port 25 (no MX lookup).
    routes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class IMAPSection:
    starttls: str = "127.0.0.1:10143"
    tls: str = "127.0.0.1:10993"
    max_message_size: int = 50 * 1024 * 1024  # APPEND limit (a Sent copy of a 25 MB mail)


@dataclass(frozen=True)
class DocumentsSection:
    cda_schema: str = "../shared/ci-sis/infrastructure/cda/CDA_extended.xsd"
    schematron_dir: str = "../shared/ci-sis/schematrons"
    # OID of the patients' INS in the documents we build: .8 INS-NIR in production, .10 test INS.
    patient_ins_root: str = "1.2.250.1.213.1.4.10"


@dataclass(frozen=True)
class XDMSection:
    max_entries: int = 64  # files in one IHE_XDM.zip
    max_total_bytes: int = 64 * 1024 * 1024  # uncompressed, all files together
    max_package_bytes: int = 32 * 1024 * 1024  # the ZIP itself
    sign_with_seal: bool = False  # sign with the structure's seal instead of the author's key


@dataclass(frozen=True)
class AuthSection:
    """Password logins (SMTP submission, IMAP): verified-credential cache and lockouts."""

    cache_ttl: int = 300  # seconds a verified address+password is remembered; 0 = no cache
    cache_size: int = 10000  # entries kept at most (oldest dropped first)
    account_max_failures: int = 5  # failed logins on one account within account_window...
    account_window: int = 900  # ...lock that account for the rest of the window (seconds)
    client_max_failures: int = 20  # failed logins from one client address (IPv6: its /64)...
    client_window: int = 900  # ...within this many seconds lock that client out
    min_password_length: int = 12


@dataclass(frozen=True)
class AdminSection:
    """Administrator accounts: console sessions, login lockout, API tokens (gateway/admins)."""

    session_idle: int = 1800  # seconds without a request before a console session ends
    session_max: int = 43200  # a session ends after this many seconds whatever its activity
    max_failures: int = 5  # failed logins within `lockout` seconds lock the account...
    lockout: int = 900  # ...for this many seconds
    token_days: int = 90  # default validity of an API token
    max_token_days: int = 366
    login_link_minutes: int = 60  # validity of a one-time login link (`mssgw admin login-link`)


@dataclass(frozen=True)
class TrustSection:
    """The trust space: re-imports of the national whitelist."""

    # A re-import removing more than this share of the peer domains imported before is refused
    # unless `mssgw trust import-whitelist --allow-removals` (a cut or wrong file must not empty
    # the trust space).
    max_removed_share: float = 0.10


@dataclass(frozen=True)
class Config:
    """The whole configuration. `home` is the folder relative paths are resolved against."""

    home: Path
    gateway: GatewaySection = field(default_factory=GatewaySection)
    storage: StorageSection = field(default_factory=StorageSection)
    tls: TLSSection = field(default_factory=TLSSection)
    pki: PKISection = field(default_factory=PKISection)
    smtp: SMTPSection = field(default_factory=SMTPSection)
    imap: IMAPSection = field(default_factory=IMAPSection)
    documents: DocumentsSection = field(default_factory=DocumentsSection)
    xdm: XDMSection = field(default_factory=XDMSection)
    auth: AuthSection = field(default_factory=AuthSection)
    admin: AdminSection = field(default_factory=AdminSection)
    trust: TrustSection = field(default_factory=TrustSection)
    source: Path | None = None

    def path(self, value: str) -> Path:
        """Resolve a configured path (absolute, or relative to the configuration's folder)."""
        p = Path(os.path.expanduser(value))
        return p if p.is_absolute() else (self.home / p)

    @property
    def database_path(self) -> Path:
        return self.path(self.storage.database)

    @property
    def mailboxes_path(self) -> Path:
        return self.path(self.storage.mailboxes)

    @property
    def queue_path(self) -> Path:
        return self.path(self.storage.queue)

    @property
    def certs_path(self) -> Path:
        return self.path(self.storage.certs)

    @property
    def audit_log_path(self) -> Path:
        return self.path(self.storage.audit_log)

    def __reduce__(self) -> tuple[Any, ...]:
        # Every call into a worker's process pool sends the configuration along: pickled field
        # by field it cost the worker ~96 us a call and the pool process ~85 us to rebuild it.
        # Pickled once per object, and rebuilt once per pool process, it costs neither.
        data = self.__dict__.get("_pickled")
        if data is None:
            fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
            data = pickle.dumps(fields, protocol=pickle.HIGHEST_PROTOCOL)
            object.__setattr__(self, "_pickled", data)  # frozen: set past the dataclass
        return _unpickle_config, (data,)


_unpickled: dict[bytes, Config] = {}


def _unpickle_config(data: bytes) -> Config:
    config = _unpickled.get(data)
    if config is None:
        if len(_unpickled) >= 8:  # a process sees one configuration (tests: a few)
            _unpickled.clear()
        config = _unpickled[data] = Config(**pickle.loads(data))  # noqa: S301 - our own pickle
    return config


_S = TypeVar("_S")


def _section(cls: type[_S], name: str, values: Any) -> _S:
    if not isinstance(values, dict):
        raise ConfigError(f"config: [{name}] must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"config: unknown key [{name}] {key} (known: {known})")
        default = fields[key].default
        expected = type(default) if default is not dataclasses.MISSING else None
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)  # TOML writes 0 or 1 as integers
        elif expected is not None and not isinstance(value, expected):
            raise ConfigError(
                f"config: [{name}] {key} must be {expected.__name__}, not {type(value).__name__}"
            )
        if expected is int and isinstance(value, bool):
            raise ConfigError(f"config: [{name}] {key} must be int, not bool")
        kwargs[key] = value
    return cls(**kwargs)


_SECTIONS: dict[str, type] = {
    "gateway": GatewaySection,
    "storage": StorageSection,
    "tls": TLSSection,
    "pki": PKISection,
    "smtp": SMTPSection,
    "imap": IMAPSection,
    "documents": DocumentsSection,
    "xdm": XDMSection,
    "auth": AuthSection,
    "admin": AdminSection,
    "trust": TrustSection,
}


def config_from_dict(data: dict[str, Any], home: Path, source: Path | None = None) -> Config:
    sections: dict[str, Any] = {}
    for name, values in data.items():
        if name not in _SECTIONS:
            raise ConfigError(f"config: unknown section [{name}] (known: {', '.join(_SECTIONS)})")
        sections[name] = _section(_SECTIONS[name], name, values)
    cfg = Config(home=home.resolve(), source=source, **sections)
    if cfg.tls.profile not in ("default", "strict"):
        raise ConfigError("config: [tls] profile must be 'default' or 'strict'")
    for key in ("ca_key_bits", "key_bits"):
        if not 2048 <= getattr(cfg.pki, key) <= 8192:
            raise ConfigError(f"config: [pki] {key} must be between 2048 and 8192")
    base = cfg.pki.crl_base_url
    if base and not (base.startswith("http://") and len(base) > len("http://")):
        raise ConfigError(
            "config: [pki] crl_base_url must be an http:// URL (CRLs are fetched over plain"
            " HTTP: fetching one over TLS would need the check it is for)"
        )
    if cfg.pki.crl_listen:
        parse_hostport(cfg.pki.crl_listen)
    for key in ("days", "crl_days"):
        if getattr(cfg.pki, key) < 1:
            raise ConfigError(f"config: [pki] {key} must be at least 1")
    if not 0.0 <= cfg.trust.max_removed_share <= 1.0:
        raise ConfigError("config: [trust] max_removed_share must be between 0 and 1")
    return cfg


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read the configuration file (default `./config.toml`, or `$MSSGW_CONFIG`)."""
    p = Path(path or os.environ.get("MSSGW_CONFIG") or DEFAULT_CONFIG)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config: {p} not found (use --config FILE)") from None
    except OSError as exc:
        raise ConfigError(f"config: cannot read {p}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config: {p} is not valid TOML: {exc}") from None
    return config_from_dict(data, p.resolve().parent, source=p.resolve())


def parse_hostport(value: str) -> tuple[str, int]:
    """'127.0.0.1:587' -> ('127.0.0.1', 587); '[::1]:587' -> ('::1', 587)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"config: {value!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)
