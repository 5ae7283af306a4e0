"""The CI-SIS schematrons run as the ANS runs them (TestContenuCDA): each `.sch` compiled to
XSLT by the ISO chain in the kit (`moteur/iso_dsdl_include.xsl` -> `iso_abstract_expand.xsl`
-> `iso_svrl_for_xslt2.xsl`), the XSLT run on the document by an XSLT 2.0 processor, its SVRL
report read back as problems.

Why Saxon (saxonche, Saxon-HE): the four generic layers need XSLT 2.0 / XPath 2.0 (`every ...
satisfies`, `ends-with`, `doc()` of the value sets); lxml's libxslt is XSLT 1.0 only.

Cost, and what is kept (measured on the 2-core VM, see docs/architecture.md): generating the
XSLT of the four generic layers through the chain takes ~10 s (StrucMin alone ~6 s: 25,000
asserts once its abstract rules are expanded, a 10 MB stylesheet); Saxon-HE then compiles it
in ~7-15 s and holds ~1 GB for StrucMin. Saxon-HE cannot save a compiled stylesheet (SEF
export needs Saxon-EE), so what is cached on disk is the generated XSLT, keyed by the kit's
content (every .sch and the chain's .xsl: a newer kit gets its own entry, an unchanged one is
never regenerated), written outside the kit (which is read-only in CI). Compiled stylesheets
are kept per process, compiled on first use.

The value sets are read with `doc()` / `document()` relative to the stylesheet: the cached
XSLT is compiled with `xml:base` set to its schematron's own folder, so the cache does not
depend on where the kit is.

What runs is not the chain's XSLT as it comes but its rewrite (`svrl_rewrite`): the same
report, ~15 times less CPU per document, half the memory, value sets parsed once per process
(this engine's `_documents`, shared by the layers) instead of once per transformation. Both
are cached; `compiled(..., rewrite=False)` runs the chain's own (the bench compares them).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlparse
from urllib.request import url2pathname

from lxml import etree

from gateway.documents import svrl_rewrite
from gateway.documents.parse import Problem, Severity
from gateway.errors import GatewayError
from gateway.fileio import write_atomic

CHAIN = ("iso_dsdl_include.xsl", "iso_abstract_expand.xsl", "iso_svrl_for_xslt2.xsl")
CHAIN_VERSION = "1"  # bump when the way the XSLT is generated changes (invalidates the cache)
SVRL = "{http://purl.oclc.org/dsdl/svrl}"
_STYLESHEET = re.compile(r"<xsl:stylesheet\b")


class SchematronError(GatewayError):
    """A schematron of the kit cannot be compiled (names the file and Saxon's reason)."""


@dataclass(frozen=True)
class Layer:
    """A schematron layer: its name in reports, and its file relative to the kit's
    schematron folder."""

    name: str
    path: str


GENERIC_LAYERS = (
    Layer("IHE", "profils/IHE.sch"),
    Layer("ModelesDeContenusCDA", "profils/CI-SIS_ModelesDeContenusCDA.sch"),
    Layer("Modeles_ANS", "profils/CI-SIS_Modeles_ANS.sch"),
    Layer("StrucMin", "profils/structurationMinimale/ASIP-STRUCT-MIN-StrucMin.sch"),
)
# The volet of each document model, by the version its templateId declares (@extension):
# found by name, so a newer kit's volet (2025.01...) needs no change here.
VOLET_FILES = {
    "prescription": "CI-SIS_EP-MED-DM_{version}.sch",
    "dispensation": "CI-SIS_eDISP-MED_{version}.sch",
}


def volet_layer(kind: str, version: str) -> Layer:
    return Layer("volet", VOLET_FILES[kind].format(version=version))


def volet_versions(kit: Path, kind: str) -> list[str]:
    """The versions of the volet the kit holds, oldest first."""
    pattern = VOLET_FILES[kind].format(version="*")
    prefix, _, suffix = VOLET_FILES[kind].partition("{version}")
    return sorted(p.name[len(prefix):-len(suffix)] for p in kit.glob(pattern))


def kit_key(kit: Path) -> str:
    """The kit's content as a key: every .sch and the chain's .xsl, by relative path (what the
    generated XSLT depends on; the value sets are read at run time)."""
    return _kit_key(str(kit.resolve()), _kit_stamp(kit))


def _kit_stamp(kit: Path) -> tuple[tuple[str, int, int], ...]:
    """Cheap to compute, changes with any file: the key is recomputed only when it moves."""
    out = []
    for path in sorted(kit.rglob("*")):
        if path.suffix in (".sch", ".xsl") and path.is_file():
            st = path.stat()
            out.append((str(path.relative_to(kit)), st.st_size, st.st_mtime_ns))
    return tuple(out)


@lru_cache(maxsize=8)
def _kit_key(kit: str, stamp: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256(f"mssgw-schematron {CHAIN_VERSION}\n".encode())
    for rel, _size, _mtime in stamp:
        digest.update(rel.encode() + b"\0")
        digest.update(hashlib.sha256((Path(kit) / rel).read_bytes()).digest())
    return digest.hexdigest()[:32]


class Engine:
    """One Saxon processor per process, its compiled chain, and the layers compiled so far.
    Not thread-safe (the servers run validation in a process pool, one document at a time
    per process)."""

    def __init__(self) -> None:
        from saxonche import PySaxonProcessor

        self.proc: Any = PySaxonProcessor(license=False)
        self.xslt: Any = self.proc.new_xslt30_processor()
        self._chains: dict[str, list[Any]] = {}
        self._compiled: dict[tuple[str, str, bool], Any] = {}
        self._documents: dict[str, Any] = {}  # the value sets, parsed once, by path

    def chain(self, kit: Path) -> list[Any]:
        moteur = kit / "moteur"
        key = str(moteur.resolve())
        if key not in self._chains:
            steps = []
            for name in CHAIN:
                path = moteur / name
                if not path.is_file():
                    raise SchematronError(f"the ISO schematron compile chain is incomplete:"
                                          f" {path} is missing")
                steps.append(self._compile(stylesheet_file=str(path), what=str(path)))
            self._chains[key] = steps
        return self._chains[key]

    def _compile(self, what: str, **source: str) -> Any:
        try:
            return self.xslt.compile_stylesheet(**source)
        except Exception as exc:  # PySaxonApiError: Saxon's static errors, one line each
            reason = " ".join(str(exc).split())[:500]
            raise SchematronError(f"cannot compile {what}: {reason}") from None

    def generate(self, kit: Path, layer: Layer) -> str:
        """The layer's XSLT through the ISO chain (include -> abstract expand -> SVRL)."""
        sch = kit / layer.path
        include, expand, svrl = self.chain(kit)
        try:
            node = self.proc.parse_xml(xml_file_name=str(sch))
            included = include.transform_to_value(xdm_node=node).head
            expanded = expand.transform_to_value(xdm_node=included).head
            return str(svrl.transform_to_string(xdm_node=expanded))
        except Exception as exc:
            reason = " ".join(str(exc).split())[:500]
            raise SchematronError(f"cannot compile {sch} to XSLT: {reason}") from None

    def compiled(self, kit: Path, layer: Layer, cache: Path | None, rewrite: bool = True
                 ) -> Any:
        """The layer compiled by Saxon: from the cached XSLT when the kit is unchanged. Kept
        for the process's life by the kit's place (the key, which reads every file of the
        kit, is computed only to compile). `rewrite`: the `svrl_rewrite` of the chain's
        XSLT (the same report for far less), else the chain's own."""
        ident = (str(kit.resolve()), layer.path, rewrite)
        if ident in self._compiled:
            return self._compiled[ident]
        key = kit_key(kit)
        name = layer.path.replace("/", "__")
        xslt = self._cached(cache / key / f"{name}.xsl" if cache else None,
                            lambda: self.generate(kit, layer).encode("utf-8"))
        if rewrite:
            plain = xslt
            xslt = self._cached(
                cache / key / f"{name}.rewrite-{svrl_rewrite.VERSION}.xsl" if cache else None,
                lambda: svrl_rewrite.rewrite(plain))
        base = (kit / layer.path).parent.resolve().as_uri() + "/"
        text = _STYLESHEET.sub(f'<xsl:stylesheet xml:base="{base}"', xslt.decode("utf-8"),
                               count=1)
        executable = self._compile(stylesheet_text=text, what=str(kit / layer.path))
        for param, uri in svrl_rewrite.documents(text).items():
            document = self._value_set(urljoin(base, uri))
            if document is not None:  # else the parameter's default reads it each time
                executable.set_parameter(param, document)
        self._compiled[ident] = executable
        return executable

    @staticmethod
    def _cached(path: Path | None, make: Callable[[], bytes]) -> bytes:
        if path is not None and path.is_file():
            return path.read_bytes()
        data = make()
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(path, data)
            except OSError:
                pass  # a read-only cache only costs the generation next time
        return data

    def _value_set(self, uri: str) -> Any:
        """The document at `uri` (a file of the kit), parsed once for every layer."""
        parts = urlparse(uri)
        if parts.scheme != "file":
            return None
        path = url2pathname(parts.path)
        if path not in self._documents:
            try:
                self._documents[path] = self.proc.parse_xml(xml_file_name=path)
            except Exception:  # PySaxonApiError: missing or unreadable, as doc() would say
                return None
        return self._documents[path]

    def document(self, tree: etree._ElementTree) -> Any:
        """The document as Saxon's tree (serialised from lxml's: the input was parsed safely,
        with no DTD or entity, before Saxon sees it)."""
        return self.proc.parse_xml(xml_text=etree.tostring(tree, encoding="unicode"))

    def run(self, kit: Path, layer: Layer, document: Any, cache: Path | None,
            rewrite: bool = True) -> list[Problem]:
        executable = self.compiled(kit, layer, cache, rewrite)
        try:
            svrl = executable.transform_to_string(xdm_node=document)
        except Exception as exc:  # PySaxonApiError: the layer cannot evaluate this document
            reason = " ".join(str(exc).split())[:300]
            return [Problem("/", f"the layer cannot evaluate the document: {reason}",
                            layer.name, "error")]
        return svrl_problems(str(svrl), layer.name)


def svrl_problems(svrl: str, layer: str) -> list[Problem]:
    """Every failed assert and successful report of an SVRL report, with its location, text
    and severity (the assert's role: warning/info as such; an assert without role, or
    error/fatal, is an error; a report without role a warning)."""
    root = etree.fromstring(svrl.encode("utf-8"))
    out = []
    for el in root.iter(f"{SVRL}failed-assert", f"{SVRL}successful-report"):
        role = str(el.get("role") or "").lower()
        failed = el.tag == f"{SVRL}failed-assert"
        severity: Severity
        if role in ("warning", "warn"):
            severity = "warning"
        elif role in ("info", "information"):
            severity = "info"
        elif role in ("error", "fatal") or failed:
            severity = "error"
        else:
            severity = "warning"
        text = el.find(f"{SVRL}text")
        parts = (text if text is not None else el).itertext()
        message = " ".join("".join(str(p) for p in parts).split())
        out.append(Problem(str(el.get("location") or "/"), message, layer, severity))
    return out


_ENGINE: Engine | None = None


def engine() -> Engine:
    """This process's engine (created on first use: starting Saxon costs ~0.1 s)."""
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = Engine()
    return _ENGINE
