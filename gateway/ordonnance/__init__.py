"""The ordonnance: the PDF a patient takes to the pharmacy, and its QR code.

- `render_pdf(prescription) -> bytes`: the PDF/A-2B ordonnance (pure, synchronous, deterministic).
- `qr_png(identifier) -> bytes`: the QR code alone, for the CDA's 2D-code section.
Both raise OrdonnanceError (a GatewayError) when the identifier is missing or malformed.
"""

from gateway.ordonnance.pdf import render_pdf
from gateway.ordonnance.qr import OrdonnanceError, qr_png

__all__ = ["OrdonnanceError", "qr_png", "render_pdf"]
