"""Clinical documents: the prescription/dispensation model, CDA build, parse and validation."""
