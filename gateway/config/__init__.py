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
    # "embedded": SQLite, Maildir and files under the gateway's home (one machine);
    # "postgresql": every gateway node shares one PostgreSQL database (`dsn`) and nothing else.
    backend: str = "embedded"
    database: str = "var/gateway.db"
    mailboxes: str = "mailboxes"
    queue: str = "var/queue"
    certs: str = "certs"
    audit_log: str = "var/audit.log"
    # The worker processes' metric files (prometheus-client multiprocess mode), emptied by every
    # `mssgw serve` at start: a tmpfs (e.g. /run/mssgw/metrics) in a deployment.
    metrics: str = "var/metrics"
    # PostgreSQL: a libpq URI or key=value string, without the password; the password comes
    # from `password_file` (its first line), else $MSSGW_DATABASE_PASSWORD, else libpq's own
    # ways ($PGPASSWORD, ~/.pgpass). TLS to the server: `sslmode` ("verify-full" to check its
    # certificate and name) and `sslrootcert` (the CA that signed it), passed to libpq.
    dsn: str = ""
    password_file: str = ""
    sslmode: str = ""
    sslrootcert: str = ""
    pool_size: int = 4  # connections per process for the mail store and the queue


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
    # External CAs' CRLs (gateway/pki/external.py): fetched from their distribution points at
    # start and every crl_refresh_hours; crl_urls adds distribution points to those the
    # anchors and the server certificate's chain name.
    crl_refresh_hours: int = 6
    crl_urls: list[str] = field(default_factory=list)


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
class HTTPSection:
    """The HTTPS listener of `mssgw serve`: health, metrics, administration (gateway/http)."""

    listen: str = "127.0.0.1:10443"  # "" disables it (and with it /readyz, /metrics)
    graceful_timeout: int = 5  # seconds requests in progress get when the gateway stops


@dataclass(frozen=True)
class LogSection:
    """The mail log (gateway/maillog.py): a line per SMTP transaction, delivery, relay
    attempt, bounce and login."""

    mail: str = ""  # a file (reopened after logrotate moves it); "" = stderr, with the rest
    format: str = "kv"  # "kv" (key=value) or "json"


@dataclass(frozen=True)
class QuotaSection:
    """Storage per mailbox, in octets, by kind of mailbox (0: no limit). SMTP refuses mail
    that would go beyond it (452 4.2.2, or 552 5.2.2 for a message larger than the whole
    quota); IMAP shows it (RFC 9208 QUOTA) and refuses APPEND/COPY beyond it."""

    per: int = 2 * 1024**3  # a professional
    org: int = 10 * 1024**3  # a structure's shared mailbox
    app: int = 10 * 1024**3  # software
    patient: int = 1024**3

    def limit(self, kind: str) -> int:
        """The quota of a mailbox kind (MailboxKind's value), 0 when unlimited."""
        return max(int(getattr(self, kind.lower(), 0)), 0)


@dataclass(frozen=True)
class DocumentsSection:
    cda_schema: str = "../shared/ci-sis/infrastructure/cda/CDA_extended.xsd"
    schematron_dir: str = "../shared/ci-sis/schematrons"
    # The schematrons compiled to XSLT (ISO chain), keyed by the kit's content: outside the kit.
    schematron_cache: str = "var/cache/schematrons"
    # Documents from outside (a doctor's software, a pharmacy's eDISP): "all" layers (the
    # generic ones in the validator process, reached at this socket), or "model" only
    # (schema, volet, own rules: no validator process, ~700 MB saved).
    incoming_layers: str = "all"
    validator_socket: str = "var/run/validator.sock"
    # OID of the patients' INS in the documents we build: .8 INS-NIR in production, .10 test INS.
    patient_ins_root: str = "1.2.250.1.213.1.4.10"


@dataclass(frozen=True)
class XDMSection:
    max_entries: int = 64  # files in one IHE_XDM.zip
    max_total_bytes: int = 64 * 1024 * 1024  # uncompressed, all files together
    max_package_bytes: int = 32 * 1024 * 1024  # the ZIP itself
    sign_with_seal: bool = False  # sign with the structure's seal instead of the author's key


PASSWORD_KINDS = ("PER", "ORG", "APP", "PATIENT")


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
    # Mailbox kinds that may log in with a password (SMTP AUTH PLAIN/LOGIN, IMAP LOGIN and
    # AUTHENTICATE PLAIN). Remove "PER" and "ORG" to make professionals log in with a Pro Santé
    # Connect token only ([oidc]); APP mailboxes may also use a TLS client certificate.
    password_kinds: list[str] = field(default_factory=lambda: list(PASSWORD_KINDS))


# JWS algorithms an access token may be signed with: asymmetric only. "none" and the HMAC
# algorithms (a key the provider shares with every relying party) are never accepted.
TOKEN_ALGORITHMS = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
)


@dataclass(frozen=True)
class OIDCSection:
    """Token logins (SASL OAUTHBEARER and XOAUTH2) with an OpenID provider's access tokens,
    e.g. Pro Santé Connect's. Off while `issuer` is empty: the mechanisms are not offered."""

    issuer: str = ""  # https URL; its /.well-known/openid-configuration is read
    audience: str = ""  # the `aud` the gateway's tokens carry (its client id at the provider)
    identifier_claim: str = "preferred_username"  # PSC: the national id, 8 + RPPS (0 + ADELI)
    algorithms: list[str] = field(default_factory=lambda: ["RS256", "PS256", "ES256"])
    ca_file: str = ""  # CA bundle for the provider's TLS; empty: the system's
    scope: str = "openid"  # the scope the RFC 7628 error tells a client to ask for
    clock_skew: int = 60  # seconds of tolerance on exp, nbf and iat
    discovery_ttl: int = 3600  # seconds the discovery document is kept
    jwks_ttl: int = 3600  # seconds the provider's keys are kept before they are read again
    jwks_refetch_interval: int = 60  # an unknown kid re-reads the keys at most this often (s)
    http_timeout: int = 5  # seconds for one request to the provider
    # RFC 7662 introspection of opaque (non-JWT) access tokens, as the gateway's own client.
    introspection: bool = False
    client_id: str = ""
    client_secret_file: str = ""  # first line is the secret; keep it 0600
    introspection_ttl: int = 60  # seconds an introspection answer is reused (never past exp)

    @property
    def enabled(self) -> bool:
        return bool(self.issuer)


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
    http: HTTPSection = field(default_factory=HTTPSection)
    log: LogSection = field(default_factory=LogSection)
    quota: QuotaSection = field(default_factory=QuotaSection)
    documents: DocumentsSection = field(default_factory=DocumentsSection)
    xdm: XDMSection = field(default_factory=XDMSection)
    auth: AuthSection = field(default_factory=AuthSection)
    oidc: OIDCSection = field(default_factory=OIDCSection)
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

    @property
    def metrics_path(self) -> Path:
        return self.path(self.storage.metrics)

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
    "http": HTTPSection,
    "log": LogSection,
    "quota": QuotaSection,
    "documents": DocumentsSection,
    "xdm": XDMSection,
    "auth": AuthSection,
    "oidc": OIDCSection,
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
    if cfg.log.format not in ("kv", "json"):
        raise ConfigError("config: [log] format must be 'kv' or 'json'")
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
    if not all(isinstance(u, str) and u.lower().startswith(("http://", "https://"))
               for u in cfg.pki.crl_urls):
        raise ConfigError("config: [pki] crl_urls must be a list of http:// or https:// URLs")
    for key in ("days", "crl_days", "crl_refresh_hours"):
        if getattr(cfg.pki, key) < 1:
            raise ConfigError(f"config: [pki] {key} must be at least 1")
    _check_storage(cfg.storage)
    _check_password_kinds(cfg.auth)
    _check_oidc(cfg.oidc)
    if not 0.0 <= cfg.trust.max_removed_share <= 1.0:
        raise ConfigError("config: [trust] max_removed_share must be between 0 and 1")
    return cfg


def _string_list(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"config: {where} must be a list of strings")
    return value


STORAGE_BACKENDS = ("embedded", "postgresql")
SSL_MODES = ("", "disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def _check_storage(storage: StorageSection) -> None:
    if storage.backend not in STORAGE_BACKENDS:
        raise ConfigError(
            f"config: [storage] backend must be one of {', '.join(STORAGE_BACKENDS)}, "
            f"not {storage.backend!r}"
        )
    if storage.backend == "postgresql" and not storage.dsn:
        raise ConfigError(
            "config: [storage] backend = \"postgresql\" needs dsn (e.g. "
            "\"postgresql://mssgw@db.example.fr:5432/mssgw\")"
        )
    if storage.sslmode not in SSL_MODES:
        raise ConfigError(
            f"config: [storage] sslmode must be one of {', '.join(m for m in SSL_MODES if m)}"
        )
    if storage.pool_size < 1:
        raise ConfigError("config: [storage] pool_size must be at least 1")


def _check_password_kinds(auth: AuthSection) -> None:
    for kind in _string_list(auth.password_kinds, "[auth] password_kinds"):
        if kind not in PASSWORD_KINDS:
            raise ConfigError(
                f"config: [auth] password_kinds: unknown mailbox kind {kind!r} "
                f"(known: {', '.join(PASSWORD_KINDS)})"
            )


def _check_oidc(oidc: OIDCSection) -> None:
    algorithms = _string_list(oidc.algorithms, "[oidc] algorithms")
    for alg in algorithms:
        if alg not in TOKEN_ALGORITHMS:
            why = ("never accepted: a token must be signed with the provider's private key"
                   if alg.lower() == "none" or alg.upper().startswith("HS") else "unknown")
            raise ConfigError(
                f"config: [oidc] algorithms: {alg!r} is {why} "
                f"(allowed: {', '.join(TOKEN_ALGORITHMS)})"
            )
    if not oidc.enabled:
        return
    if not algorithms:
        raise ConfigError("config: [oidc] algorithms must name at least one algorithm")
    if not oidc.issuer.startswith("https://"):
        raise ConfigError(f"config: [oidc] issuer must be an https:// URL, not {oidc.issuer!r}")
    if not oidc.audience:
        raise ConfigError(
            "config: [oidc] audience is required with an issuer (the gateway's client id at "
            "the provider: tokens for other services are refused)"
        )
    if not oidc.identifier_claim:
        raise ConfigError("config: [oidc] identifier_claim must not be empty")
    for key in ("clock_skew", "discovery_ttl", "jwks_ttl", "jwks_refetch_interval",
                "introspection_ttl"):
        if getattr(oidc, key) < 0:
            raise ConfigError(f"config: [oidc] {key} must not be negative")
    if oidc.clock_skew > 300:
        raise ConfigError("config: [oidc] clock_skew is at most 300 seconds")
    if oidc.http_timeout < 1:
        raise ConfigError("config: [oidc] http_timeout must be at least 1 second")
    if oidc.introspection and not (oidc.client_id and oidc.client_secret_file):
        raise ConfigError(
            "config: [oidc] introspection needs client_id and client_secret_file (the "
            "gateway's own client at the provider)"
        )


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
