"""The prescription journey as pipeline steps (`steps.STEPS`, given to the pipeline by the root).

Each step looks at an accepted message and, when it is one of the journey's, replaces the
deliveries to the recipients it handles by the messages the journey calls for:

- `prescribe` — doctor → patient: a prescription (mail form, CDA or XDM package) becomes a
  registered, signed ordonnance delivered to the patient in the MSSanté format; the doctor
  gets a receipt (and an MDN when asked), or the explanation of why nothing was done.
- `verify` — patient → pharmacy: the forwarded ordonnance is checked (signature, registry) and
  the pharmacy gets the verdict in `X-Ordonnance-Verification` and in words.
- `dispense` — pharmacy → robot or prescriber: a dispensation is recorded, signed, filed in
  the DMP and reported to the prescriber (unless the patient objected) and to the patient;
  the prescriber's cancellations mailed to the robot.
- `file_xdm` — any other XDM package addressed to a patient is filed in the patient's DMP.

The step (event loop) only decides cheaply whether a message concerns it; everything else (MIME,
XML, PDF, signatures, storage) runs in the pipeline's process pool through `run_flow`, where
each process builds its root once and keeps what it opened (`context.py`); the registry, the
DMP and the idempotence keys change together in one unit of work (`records.py`).
"""
