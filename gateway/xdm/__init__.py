"""IHE XDM packages (IHE_XDM.zip): pack CDA documents with their XDS metadata, read any package.

Public API (pure, synchronous; see docs/architecture.md, section "XDM packages and signatures"):
- `pack(documents, sender=, now=, codes=) -> bytes`
- `read_package(data, limits=) -> Package` (raises InvalidPackage / InvalidMetadata)
- `cda_entry(data, entry_id=, uri=)` — XDS metadata of one CDA header
- model: Package, Document, DocumentEntry, SubmissionSet, Association, Author, Code; Limits.
"""

from gateway.xdm.header import MissingMetadata, cda_entry
from gateway.xdm.metadata import InvalidMetadata
from gateway.xdm.model import (
    Association,
    Author,
    Code,
    Document,
    DocumentEntry,
    Package,
    SubmissionSet,
)
from gateway.xdm.package import InvalidPackage, Limits, Sender, pack, read_package

__all__ = [
    "Association",
    "Author",
    "Code",
    "Document",
    "DocumentEntry",
    "InvalidMetadata",
    "InvalidPackage",
    "Limits",
    "MissingMetadata",
    "Package",
    "Sender",
    "SubmissionSet",
    "cda_entry",
    "pack",
    "read_package",
]
