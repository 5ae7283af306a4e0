"""Clinical documents: the prescription/dispensation model, CDA build, parse and validation.

Public API (pure, synchronous functions; the servers run them in a process pool):
- `model`: Prescription, Dispensation and their parts (frozen dataclasses);
- `build.assign_ids(p)`, `build.build_prescription(p, pdf, qr_png) -> bytes`,
  `build.build_dispensation(d) -> bytes`;
- `parse.parse_document(data) -> ParsedDocument` (model + problems with locations),
  `parse.parse_prescription(data)`, `parse.parse_dispensation(data)`;
- `validate.validate_document(data, kit=Kit(schema, schematrons, cache), layers=, drugs=,
  deliver=) -> ValidationReport`: every layer (schema, volet of the declared version, the four
  generic CI-SIS layers through `schematron`, own rules), each problem with its severity;
- `form.parse_prescription_form(text, ...)`, `form.parse_dispensation_form(text, ...)`: the
  plain-text forms doctors and pharmacists mail.
"""
