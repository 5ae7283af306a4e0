"""What the gateway reads from the OpenID provider, and how long it keeps it.

    provider = Provider.from_config(config)          # once per worker process
    keys = await provider.signing_keys(kid, alg)     # the keys a token may be verified with
    answer = await provider.introspect(token)        # RFC 7662, for opaque tokens

- The discovery document (`<issuer>/.well-known/openid-configuration`) is read first and kept
  `discovery_ttl` seconds; its `issuer` must be the configured one, byte for byte.
- The key set (`jwks_uri`) is kept `jwks_ttl` seconds. A token naming a key id the set does not
  hold makes one new read of the set (the provider has rotated its keys), at most once every
  `jwks_refetch_interval` seconds: a flood of tokens with made-up key ids costs the provider
  one request a minute, not one per token. When a read fails the keys already held are kept.
- Requests run in a small thread pool with a bounded size and time, never on the event loop;
  concurrent callers that need the same document wait for one request. One Provider serves
  every connection of a worker process (SMTP and IMAP), so the documents are read once per
  worker, not once per login.
- HTTP goes through httpx with the provider's CA (`ca_file`), no redirects, answers of at most
  1 MiB. Keys are parsed by joserfc; only signature keys usable with an allowed algorithm count.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import logging
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey, RSAKey, import_key

from gateway.config import Config, OIDCSection
from gateway.errors import ConfigError

log = logging.getLogger("mssgw.oidc")

MAX_DOCUMENT = 1024 * 1024
DISCOVERY_PATH = "/.well-known/openid-configuration"

VerifyKey = RSAKey | ECKey | OKPKey
_T = TypeVar("_T")

# Which key type each algorithm needs (and for ES*, which curve).
_KEY_TYPES: dict[str, tuple[str, str | None]] = {
    **{f"{p}{n}": ("RSA", None) for p in ("RS", "PS") for n in ("256", "384", "512")},
    "ES256": ("EC", "P-256"), "ES384": ("EC", "P-384"), "ES512": ("EC", "P-521"),
    "EdDSA": ("OKP", None),
}


class ProviderError(Exception):
    """The provider could not be reached, or answered something unusable: a temporary failure
    for the client (try again later), never a refusal of its token."""


def discovery_url(issuer: str) -> str:
    return issuer.rstrip("/") + DISCOVERY_PATH


@dataclass(frozen=True)
class KeySetSnapshot:
    """The provider's signature keys as read at `fetched`."""

    by_kid: dict[str, list[VerifyKey]]
    without_kid: list[VerifyKey]
    fetched: float

    def candidates(self, kid: str | None, alg: str) -> list[VerifyKey]:
        keys = self.by_kid.get(kid, []) if kid else [
            k for ks in self.by_kid.values() for k in ks
        ] + self.without_kid
        return [k for k in keys if _fits(k, alg)]

    @property
    def size(self) -> int:
        return sum(len(v) for v in self.by_kid.values()) + len(self.without_kid)


def _fits(key: VerifyKey, alg: str) -> bool:
    kty, curve = _KEY_TYPES.get(alg, ("", None))
    if key.key_type != kty:
        return False
    if curve is not None and key.get("crv") != curve:
        return False
    key_alg = key.get("alg")
    return key_alg is None or key_alg == alg


def parse_key_set(doc: Any) -> tuple[dict[str, list[VerifyKey]], list[VerifyKey]]:
    """The signature keys of a JWKS document; keys for encryption, symmetric keys, private
    parts and keys joserfc cannot read are left out (one log line says how many)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise ProviderError("the key set is not a JSON object with a 'keys' list")
    by_kid: dict[str, list[VerifyKey]] = {}
    without: list[VerifyKey] = []
    skipped = 0
    for data in doc["keys"]:
        if not isinstance(data, dict) or data.get("use", "sig") != "sig" or data.get(
            "kty"
        ) not in ("RSA", "EC", "OKP"):
            skipped += 1
            continue
        public = {k: v for k, v in data.items() if k not in ("d", "p", "q", "dp", "dq", "qi")}
        try:
            key = import_key(public)
        except (JoseError, ValueError, TypeError):
            skipped += 1
            continue
        if not isinstance(key, RSAKey | ECKey | OKPKey):
            skipped += 1
            continue
        kid = data.get("kid")
        if isinstance(kid, str) and kid:
            by_kid.setdefault(kid, []).append(key)
        else:
            without.append(key)
    if skipped:
        log.info("provider key set: %d key(s) left out (not signature keys, or unreadable)",
                 skipped)
    return by_kid, without


class _Coalesced:
    """Runs `fn` in the pool; callers arriving while it runs wait for the same result."""

    def __init__(self, pool: Callable[[], concurrent.futures.Executor]) -> None:
        self._pool = pool
        self._lock = threading.Lock()
        self._running: dict[str, concurrent.futures.Future[Any]] = {}

    def submit(self, name: str, fn: Callable[[], _T]) -> concurrent.futures.Future[_T]:
        with self._lock:
            future = self._running.get(name)
            if future is not None:
                return future
            future = self._pool().submit(fn)
            self._running[name] = future
        # Outside the lock: a future that already finished runs its callback at once, in this
        # thread, and `_done` takes the lock (a deadlock when it was still held).
        future.add_done_callback(lambda f: self._done(name, f))
        return future

    def _done(self, name: str, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            if self._running.get(name) is future:
                del self._running[name]


@dataclass
class _Introspected:
    answer: dict[str, Any]
    until: float


@dataclass
class Provider:
    """The provider's documents for one worker process; safe to share by threads and loops."""

    settings: OIDCSection
    ca_file: Path | None = None
    client_secret: str = ""
    clock: Callable[[], float] = time.time
    fetches: dict[str, int] = field(default_factory=lambda: {"discovery": 0, "jwks": 0})
    _metadata: tuple[dict[str, Any], float] | None = None
    _keys: KeySetSnapshot | None = None
    _last_jwks_attempt: float = float("-inf")
    _last_error: str = ""
    _ssl: ssl.SSLContext | None = None
    _executor: concurrent.futures.ThreadPoolExecutor | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _metadata_lock: threading.Lock = field(default_factory=threading.Lock)
    _introspected: OrderedDict[bytes, _Introspected] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        self._jobs = _Coalesced(self._pool)

    @classmethod
    def from_config(cls, config: Config) -> Provider:
        s = config.oidc
        secret = ""
        if s.introspection:
            path = config.path(s.client_secret_file)
            try:
                secret = path.read_text(encoding="utf-8").splitlines()[0].strip()
            except (OSError, IndexError, UnicodeDecodeError) as exc:
                raise ConfigError(
                    f"config: [oidc] client_secret_file {path}: cannot read a secret from it "
                    f"({type(exc).__name__})"
                ) from None
        return cls(s, config.path(s.ca_file) if s.ca_file else None, secret)

    def _pool(self) -> concurrent.futures.Executor:
        # Made on first use, in the worker process (a pool made before fork has no threads).
        with self._lock:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=2, thread_name_prefix="oidc-http"
                )
            return self._executor

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def discovery_url(self) -> str:
        return discovery_url(self.settings.issuer)

    @property
    def metadata(self) -> dict[str, Any]:
        """The discovery document last read ({} before the first read)."""
        return self._metadata[0] if self._metadata else {}

    @property
    def has_keys(self) -> bool:
        return self._keys is not None

    @property
    def last_error(self) -> str:
        """Why the last read of the provider's documents failed ("" if none did)."""
        return self._last_error

    # --- HTTP (in the pool's threads) ---------------------------------------------------------

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            ctx = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            self._ssl = ctx
        return self._ssl

    def _request(self, method: str, url: str, **kwargs: Any) -> Any:
        if not url.startswith("https://"):
            raise ProviderError(f"refusing a non-https provider URL: {url[:200]}")
        try:
            with httpx.Client(
                verify=self._context(), timeout=self.settings.http_timeout,
                follow_redirects=False, trust_env=False,
            ) as http, http.stream(method, url, **kwargs) as r:
                body = bytearray()
                for chunk in r.iter_bytes():
                    body += chunk
                    if len(body) > MAX_DOCUMENT:
                        raise ProviderError(f"{url[:200]}: answer larger than 1 MiB")
                if r.status_code != 200:
                    raise ProviderError(f"{url[:200]}: HTTP {r.status_code}")
                return httpx.Response(200, content=bytes(body)).json()
        except httpx.HTTPError as exc:
            raise ProviderError(f"{url[:200]}: {type(exc).__name__}: {exc}") from None
        except ValueError:
            raise ProviderError(f"{url[:200]}: the answer is not JSON") from None

    def _fetch_metadata(self) -> dict[str, Any]:
        self.fetches["discovery"] += 1
        doc = self._request("GET", self.discovery_url)
        if not isinstance(doc, dict):
            raise ProviderError("the discovery document is not a JSON object")
        if doc.get("issuer") != self.settings.issuer:
            raise ProviderError(
                f"the discovery document names issuer {str(doc.get('issuer'))[:200]!r}, "
                f"not the configured {self.settings.issuer!r}"
            )
        if not str(doc.get("jwks_uri", "")).startswith("https://"):
            raise ProviderError("the discovery document has no https jwks_uri")
        self._metadata = (doc, self.clock())
        return doc

    def _metadata_sync(self) -> dict[str, Any]:
        """The discovery document (in a pool thread: one thread reads it, the others wait)."""
        fresh = self._fresh_metadata()
        if fresh is not None:
            return fresh
        with self._metadata_lock:
            return self._fresh_metadata() or self._fetch_metadata()

    def _fresh_metadata(self) -> dict[str, Any] | None:
        cached = self._metadata
        if cached is not None and self.clock() - cached[1] < self.settings.discovery_ttl:
            return cached[0]
        return None

    def _fetch_keys(self) -> KeySetSnapshot:
        try:
            meta = self._metadata_sync()
            self.fetches["jwks"] += 1
            by_kid, without = parse_key_set(self._request("GET", str(meta["jwks_uri"])))
        except ProviderError as exc:
            self._last_error = str(exc)
            log.warning("OpenID provider: cannot read its keys: %s", exc)
            raise
        snapshot = KeySetSnapshot(by_kid, without, self.clock())
        self._keys = snapshot
        log.info("OpenID provider: %d signature key(s) read (%s)", snapshot.size,
                 ", ".join(sorted(by_kid)) or "no key ids")
        return snapshot

    # --- what the validator asks ----------------------------------------------------------------

    def _refresh(self) -> concurrent.futures.Future[KeySetSnapshot]:
        with self._lock:
            self._last_jwks_attempt = self.clock()
        return self._jobs.submit("jwks", self._fetch_keys)

    def _plan(self, kid: str | None, alg: str) -> tuple[list[VerifyKey] | None, bool]:
        """(keys to use now or None, whether a read of the key set is wanted first)."""
        s, now = self.settings, self.clock()
        snap = self._keys
        may_fetch = now - self._last_jwks_attempt >= s.jwks_refetch_interval
        if snap is None:
            if not may_fetch:
                raise ProviderError(f"the provider's keys are unavailable: {self._last_error}")
            return None, True
        if now - snap.fetched >= s.jwks_ttl and may_fetch:
            return None, True
        keys = snap.candidates(kid, alg)
        if not keys and kid is not None and may_fetch:
            return None, True  # a key we have not seen: the provider may have rotated
        return keys, False

    def _after_fetch(self, kid: str | None, alg: str) -> list[VerifyKey]:
        snap = self._keys
        if snap is None:
            raise ProviderError(f"the provider's keys are unavailable: {self._last_error}")
        return snap.candidates(kid, alg)  # stale keys are better than none when a read fails

    async def signing_keys(self, kid: str | None, alg: str) -> list[VerifyKey]:
        """The provider's keys a token with this header may be verified with (empty: the key
        is unknown even after a fresh read)."""
        keys, fetch = self._plan(kid, alg)
        if not fetch:
            assert keys is not None
            return keys
        with contextlib.suppress(ProviderError):  # logged; the keys held are kept
            await asyncio.wrap_future(self._refresh())
        return self._after_fetch(kid, alg)

    def signing_keys_sync(self, kid: str | None, alg: str) -> list[VerifyKey]:
        keys, fetch = self._plan(kid, alg)
        if not fetch:
            assert keys is not None
            return keys
        with contextlib.suppress(ProviderError):  # logged; the keys held are kept
            self._refresh().result()
        return self._after_fetch(kid, alg)

    # --- RFC 7662 introspection -------------------------------------------------------------

    def _introspect_sync(self, token: str, key: bytes) -> dict[str, Any]:
        meta = self._metadata_sync()
        url = meta.get("introspection_endpoint")
        if not isinstance(url, str) or not url:
            raise ProviderError("the provider offers no introspection_endpoint")
        answer = self._request(
            "POST", url, data={"token": token, "token_type_hint": "access_token"},
            auth=(self.settings.client_id, self.client_secret),
        )
        if not isinstance(answer, dict) or not isinstance(answer.get("active"), bool):
            raise ProviderError("the introspection answer has no boolean 'active'")
        now = self.clock()
        until = now + self.settings.introspection_ttl
        exp = answer.get("exp")
        if isinstance(exp, int | float):
            until = min(until, float(exp))
        with self._lock:
            self._introspected[key] = _Introspected(answer, until)
            while len(self._introspected) > 10_000:
                self._introspected.popitem(last=False)
        return answer

    async def introspect(self, token: str) -> dict[str, Any]:
        """The provider's answer on `token` (its `active` flag and claims), kept
        `introspection_ttl` seconds (never past the token's expiry)."""
        key = hashlib.sha256(token.encode("utf-8")).digest()  # never the token itself
        with self._lock:
            hit = self._introspected.get(key)
        if hit is not None and hit.until > self.clock():
            return hit.answer
        return await asyncio.wrap_future(
            self._jobs.submit(f"introspect:{key.hex()}", lambda: self._introspect_sync(token, key))
        )
