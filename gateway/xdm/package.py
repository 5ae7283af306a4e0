"""IHE_XDM.zip: pack documents into an XDM package, and read (and check) any XDM package.

Pure functions, bytes in and bytes/objects out: the servers run them in a process pool.
Reading is defensive because packages come from outside: the ZIP's declared sizes are checked
before anything is decompressed, bytes are counted again while decompressing (a ZIP can lie
about sizes), and names that could escape a folder, encrypted entries and archives inside the
archive are refused. Hash and size are checked over the exact bytes in the ZIP.
"""

from __future__ import annotations

import datetime as dt
import io
import posixpath
import re
import struct
import uuid
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from lxml import etree

from gateway.config import Config
from gateway.errors import GatewayError
from gateway.xdm import model as m
from gateway.xdm.archive import write_zip
from gateway.xdm.header import MissingMetadata, cda_entry, sha1_hex
from gateway.xdm.metadata import InvalidMetadata, read_metadata, write_metadata
from gateway.xdm.model import (
    Association,
    Code,
    Document,
    DocumentEntry,
    Package,
    SubmissionSet,
)

ROOT_FOLDER = "IHE_XDM"
SUBSET = "IHE_XDM/SUBSET01"
METADATA = "METADATA.XML"
ARCHIVE_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"\x1f\x8b", b"7z\xbc\xaf", b"Rar!", b"BZh",
                 b"\xfd7zXZ")
# What zipfile raises on corrupt input (it has no single error type for it).
ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, struct.error, EOFError, ValueError, OSError,
              KeyError, IndexError, OverflowError, NotImplementedError, RuntimeError)
ARCHIVE_SUFFIXES = (".zip", ".gz", ".tgz", ".tar", ".7z", ".rar", ".bz2", ".xz", ".jar")


class InvalidPackage(GatewayError):
    """The package is not an acceptable XDM ZIP; the message says why."""


@dataclass(frozen=True)
class Limits:
    """What a package may hold before we refuse it (ZIP bombs, floods)."""

    max_entries: int = 64
    max_total_bytes: int = 64 * 1024 * 1024  # uncompressed, all entries together
    max_package_bytes: int = 32 * 1024 * 1024  # the ZIP itself (mail is capped at 25 MB)

    @classmethod
    def of(cls, config: Config) -> Limits:
        """The limits set in config.toml [xdm]."""
        x = config.xdm
        return cls(x.max_entries, x.max_total_bytes, x.max_package_bytes)


@dataclass(frozen=True)
class Sender:
    """Who sends the package, for README.TXT and INDEX.HTM."""

    name: str = ""
    organisation: str = ""
    product: str = "mssgw"
    version: str = ""
    vendor: str = "mssgw"


def new_id() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def new_oid() -> str:
    """A unique OID from a random UUID (2.25 arc, ITU-T X.667)."""
    return f"2.25.{uuid.uuid4().int}"


def xds_time(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y%m%d%H%M%S")


# --- packing -------------------------------------------------------------------------------


def doc_name(n: int) -> str:
    return f"DOC{n:04d}.XML"


def _readme(sender: Sender, names: Sequence[str]) -> bytes:
    lines = [
        "Emetteur :",
        "=============",
        f"    . Nom : {sender.name}",
        f"    . Organisme : {sender.organisation}",
        "",
        "Application de l'emetteur :",
        "=========================",
        f"    . Nom : {sender.product}",
        f"    . Version : {sender.version}",
        f"    . Editeur : {sender.vendor}",
        "",
        "Instructions :",
        "=============",
        ". Consultez les fichiers reçus par messagerie securisee de sante dans votre logiciel"
        " de professionnel de sante.",
        "",
        "Arborescence :",
        "============",
        "     README.TXT",
        "     INDEX.HTM",
        "     + IHE_XDM",
        "           +SUBSET01",
        "                METADATA.XML",
        *(f"                {n}" for n in names),
        "",
    ]
    return "\r\n".join(lines).encode("utf-8")


def _index(sender: Sender, names: Sequence[str]) -> bytes:
    from html import escape

    links = "".join(
        f'<li><a href="{SUBSET}/{n}">{n}</a></li>\r\n' for n in (METADATA, *names)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\r\n'
        '<html xmlns="http://www.w3.org/1999/xhtml"><head><title>IHE XDM</title></head><body>\r\n'
        f"<p>Emetteur : {escape(sender.organisation or sender.name)}</p>\r\n"
        f"<ul>\r\n{links}</ul>\r\n"
        '<p>Voir le fichier <a href="README.TXT">ReadMe</a></p>\r\n'
        "</body></html>\r\n"
    ).encode()


def pack(
    documents: Sequence[bytes],
    *,
    sender: Sender | None = None,
    now: dt.datetime | None = None,
    codes: Sequence[tuple[Code, Code] | None] | None = None,
    source_id: str | None = None,
) -> bytes:
    """An IHE_XDM.zip holding the CDA `documents` (bytes kept exactly as given).

    Metadata come from each CDA header (gateway.xdm.header). All documents must concern the
    same patient (one patient per message). `codes[i]` gives (classCode, formatCode) for a
    document type the gateway does not know.
    """
    return to_zip(build(documents, sender=sender, now=now, codes=codes, source_id=source_id))


def build(
    documents: Sequence[bytes],
    *,
    sender: Sender | None = None,
    now: dt.datetime | None = None,
    codes: Sequence[tuple[Code, Code] | None] | None = None,
    source_id: str | None = None,
    trees: Sequence[etree._Element | None] | None = None,
    metadata: bool = True,
) -> Package:
    """What `pack` zips, as a Package in memory: a flow that signs it next and files it
    (`gateway.signature.sign`) zips once, instead of zipping, reading back and zipping again.
    `trees[i]`: the tree `documents[i]` was serialised from, when the gateway built it
    (`gateway.documents.build.prescription_document`), read instead of parsing the bytes.
    `metadata=False`: without its METADATA.XML, which `gateway.signature.sign` then writes once
    with the signature's entry, instead of this writing it and signing parsing it back to append
    to it (~0.2 ms per prescription); `to_zip` refuses the package until then."""
    if not documents:
        raise InvalidPackage("nothing to pack: give at least one CDA document")
    sender = sender or Sender()
    when = now or dt.datetime.now(dt.UTC)
    entries: list[DocumentEntry] = []
    for i, data in enumerate(documents, 1):
        try:
            entries.append(
                cda_entry(data, entry_id=new_id(), uri=doc_name(i),
                          codes=codes[i - 1] if codes else None,
                          root=trees[i - 1] if trees else None)
            )
        except GatewayError as exc:
            error = MissingMetadata if isinstance(exc, MissingMetadata) else InvalidPackage
            raise error(f"document {i}: {exc}") from None
    patients = {e.patient_id for e in entries}
    if len(patients) > 1:
        raise InvalidPackage(
            "one package concerns one patient; these documents name " + ", ".join(sorted(patients))
        )
    first = entries[0]
    author = first.authors[0] if first.authors else None
    if source_id is None:
        # The sending structure (XON id) when known, else a fresh OID for this gateway's run.
        inst = author.institution if author else None
        source_id = (
            f"1.2.250.1.71.4.2.2.{inst.rsplit('^', 1)[-1]}" if inst and "^" in inst else new_oid()
        )
    title = first.title if len(entries) == 1 else f"{len(entries)} documents"
    submission = SubmissionSet(
        entry_id=new_id(),
        unique_id=new_oid(),
        source_id=source_id,
        patient_id=first.patient_id,
        submission_time=xds_time(when),
        title=title,
        content_type=first.facility_type,
        authors=(author,) if author else (),
    )
    associations = tuple(
        Association(new_id(), m.HAS_MEMBER, submission.entry_id, e.entry_id) for e in entries
    )
    docs = tuple(Document(e, f"{SUBSET}/{e.uri}", d)
                 for e, d in zip(entries, documents, strict=True))
    names = [e.uri for e in entries]
    files = {"README.TXT": _readme(sender, names), "INDEX.HTM": _index(sender, names)}
    files.update((d.path, d.data) for d in docs)
    if metadata:
        files[f"{SUBSET}/{METADATA}"] = write_metadata(submission, entries, associations)
    return Package(submission, docs, associations, SUBSET, f"{SUBSET}/{METADATA}", files)


def to_zip(package: Package) -> bytes:
    """The ZIP of `package`: its files in order, each folder entry before its first file."""
    if package.metadata_path not in package.files:
        raise InvalidPackage(
            f"no {METADATA} in the package: one built without it (build(metadata=False)) is"
            " zipped once signed (gateway.signature.sign writes it)"
        )
    out: list[tuple[str, bytes]] = []
    folders: set[str] = set()
    for path, data in package.files.items():
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            folder = "/".join(parts[:i]) + "/"
            if folder not in folders:
                folders.add(folder)
                out.append((folder, b""))
        out.append((path, data))
    return write_zip(out)


# --- reading -------------------------------------------------------------------------------

_BAD_NAME = re.compile(r"[\x00-\x1f\\]")


def check_name(name: str) -> str | None:
    """Why this entry name is refused, or None."""
    if _BAD_NAME.search(name):
        return "backslash or control character in name"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    parts = name.rstrip("/").split("/")
    if any(p in ("..", ".") for p in parts):
        return "'..' or '.' path segment"
    if any(p == "" for p in parts):
        return "empty path segment"
    return None


def _metadata_path(names: Sequence[str]) -> str:
    """The path of the one METADATA.XML (any case) under IHE_XDM/<SUBSET>/."""
    found = sorted(
        n
        for n in names
        if n.upper().endswith("/" + METADATA)
        and n.upper().startswith(ROOT_FOLDER + "/")
        and n.count("/") == 2
    )
    if not found:
        raise InvalidPackage(f"not an XDM package: no {ROOT_FOLDER}/<SUBSET>/{METADATA}")
    if len(found) > 1:
        raise InvalidPackage(
            f"{len(found)} submission sets ({', '.join(found)}): only one per package is supported"
        )
    return found[0]


def _read_entries(package: bytes, limits: Limits) -> dict[str, bytes]:
    if len(package) > limits.max_package_bytes:
        raise InvalidPackage(
            f"package is {len(package)} bytes, over the limit of {limits.max_package_bytes}"
        )
    try:
        zf = zipfile.ZipFile(io.BytesIO(package))
    except (*ZIP_ERRORS, zipfile.LargeZipFile) as exc:
        raise InvalidPackage(f"not a ZIP file: {exc}") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.max_entries:
            raise InvalidPackage(
                f"{len(infos)} entries in the ZIP, over the limit of {limits.max_entries}"
            )
        declared = sum(i.file_size for i in infos)
        if declared > limits.max_total_bytes:
            raise InvalidPackage(
                f"ZIP declares {declared} uncompressed bytes, over the limit of "
                f"{limits.max_total_bytes}"
            )
        seen: set[str] = set()
        for info in infos:
            why = check_name(info.filename)
            if why:
                raise InvalidPackage(f"entry {info.filename!r} refused: {why}")
            if info.filename.upper() in seen:
                raise InvalidPackage(f"entry {info.filename!r} appears twice")
            seen.add(info.filename.upper())
            if info.flag_bits & 0x1:
                raise InvalidPackage(f"entry {info.filename!r} is encrypted")
            if info.filename.lower().endswith(ARCHIVE_SUFFIXES):
                raise InvalidPackage(f"entry {info.filename!r} is an archive inside the archive")
        files: dict[str, bytes] = {}
        budget = limits.max_total_bytes
        for info in infos:
            if info.is_dir():
                continue
            data = _read_bounded(zf, info, budget)
            budget -= len(data)
            if data.startswith(ARCHIVE_MAGIC):
                raise InvalidPackage(f"entry {info.filename!r} is an archive inside the archive")
            files[info.filename] = data
    return files


def _read_bounded(zf: zipfile.ZipFile, info: zipfile.ZipInfo, budget: int) -> bytes:
    """Decompress one entry, never more than `budget` bytes nor more than it declares."""
    cap = min(budget, info.file_size)
    chunks: list[bytes] = []
    total = 0
    try:
        with zf.open(info) as fh:
            while True:
                chunk = fh.read(65536)
                if not chunk:
                    break
                total += len(chunk)
                if total > cap:
                    raise InvalidPackage(
                        f"entry {info.filename!r} decompresses to more than its declared "
                        f"{info.file_size} bytes or the limit"
                    )
                chunks.append(chunk)
    except InvalidPackage:
        raise
    except ZIP_ERRORS as exc:
        raise InvalidPackage(f"entry {info.filename!r} cannot be read: {exc}") from None
    if total != info.file_size:
        raise InvalidPackage(
            f"entry {info.filename!r}: {total} bytes, not the {info.file_size} it declares"
        )
    return b"".join(chunks)


def _resolve(files: dict[str, bytes], subset: str, uri: str) -> str | None:
    why = check_name(uri)
    if why or "/" in uri.strip("/") and not uri.upper().startswith(ROOT_FOLDER + "/"):
        raise InvalidPackage(f"document URI {uri!r} refused: {why or 'outside the submission set'}")
    path = uri if uri.upper().startswith(ROOT_FOLDER + "/") else posixpath.join(subset, uri)
    if path in files:
        return path
    # 8.3 names may change case on the way (FAT media, some ZIP tools).
    matches = [n for n in files if n.upper() == path.upper()]
    return matches[0] if len(matches) == 1 else None


def read_package(package: bytes, limits: Limits | None = None) -> Package:
    """Open and check an XDM package: ZIP safety, metadata, and each document's hash and size.

    Raises InvalidPackage or InvalidMetadata with the reason; returns the Package otherwise.
    """
    limits = limits or Limits()
    files = _read_entries(package, limits)
    meta_path = _metadata_path(list(files))
    subset = meta_path.rsplit("/", 1)[0]
    submission, entries, associations = read_metadata(files[meta_path])
    documents: list[Document] = []
    for entry in entries:
        path = _resolve(files, subset, entry.uri)
        if path is None:
            raise InvalidPackage(
                f"document {entry.uri} (entry {entry.entry_id}) is named in METADATA.XML but is"
                " not in the ZIP"
            )
        data = files[path]
        if len(data) != entry.size:
            raise InvalidPackage(
                f"document {entry.uri}: size is {len(data)} bytes, METADATA.XML says {entry.size}"
            )
        actual = sha1_hex(data)
        if actual != entry.hash.upper():
            raise InvalidPackage(
                f"document {entry.uri}: SHA-1 is {actual}, METADATA.XML says {entry.hash}"
            )
        documents.append(Document(entry, path, data))
    paths = [d.path for d in documents]
    if len(set(paths)) != len(paths):
        raise InvalidMetadata("METADATA.XML: two document entries name the same file")
    return Package(submission, tuple(documents), associations, subset, meta_path, files)
