"""Which units a dose of a medicine can be counted in, from its pharmaceutical form.

A tablet is taken in tablets (or in mg), not in drops; an inhaler in puffs, not in sachets. The
BDPM gives each speciality a form ("comprimé pelliculé sécable", "suspension pour inhalation en
flacon pressurisé", "comprimé et solution(s) et granules et poudre et pommade") and each
presentation a label ("plaquette(s) ... de 30 comprimé(s)", "20 sachet(s)"): the units that fit
are read from their words. Pure functions.

Units are the form's codes (`documents.form.DOSE_WORDS`): counted units in braces (UCUM
annotations), drops `[drp]`, volume `mL`. Mass and activity (mg, g, ug, [iU]) fit every form: a
dose may always be written as an amount of substance ("1 g 3 fois par jour").
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from gateway.drugs.bdpm import normalise_name

TABLET, CAPSULE, SACHET, DROP = "{tablet}", "{capsule}", "{sachet}", "[drp]"
APPLICATION, PUFF, SUPPOSITORY = "{application}", "{puff}", "{suppository}"
AMPOULE, PATCH, SPOON, ML = "{ampoule}", "{patch}", "{spoon}", "mL"
COUNTED = frozenset({TABLET, CAPSULE, SACHET, DROP, APPLICATION, PUFF, SUPPOSITORY, AMPOULE,
                     PATCH, SPOON, ML})
AMOUNT = frozenset({"mg", "g", "ug", "[iU]"})  # fit any form

# word of the form, the name or a presentation label (normalised, a prefix) -> units it allows
_WORDS: list[tuple[str, frozenset[str]]] = [
    ("comprime", frozenset({TABLET})),
    ("pastille", frozenset({TABLET})),
    ("lyophilisat oral", frozenset({TABLET})),
    ("film orodispersible", frozenset({TABLET})),
    ("gomme", frozenset({TABLET})),
    ("gelule", frozenset({CAPSULE})),
    ("capsule", frozenset({CAPSULE})),
    ("sachet", frozenset({SACHET})),
    ("granule", frozenset({SACHET, SPOON, TABLET})),  # homeopathic granules are counted too
    ("poudre orale", frozenset({SACHET, SPOON})),
    ("goutte", frozenset({DROP, ML})),
    ("collyre", frozenset({DROP})),
    ("buvable", frozenset({ML, SPOON, AMPOULE, SACHET})),
    ("sirop", frozenset({ML, SPOON})),
    ("solution", frozenset({ML, DROP})),
    ("suspension", frozenset({ML})),
    ("emulsion", frozenset({ML})),
    ("liquide", frozenset({ML})),
    ("injectable", frozenset({ML, AMPOULE})),
    ("perfusion", frozenset({ML, AMPOULE})),
    ("injection", frozenset({ML, AMPOULE})),
    ("usage parenteral", frozenset({ML, AMPOULE})),
    ("ampoule", frozenset({AMPOULE})),
    ("inhalation", frozenset({PUFF})),
    ("pulverisation", frozenset({PUFF})),
    ("nebuliseur", frozenset({ML, AMPOULE})),
    ("creme", frozenset({APPLICATION})),
    ("pommade", frozenset({APPLICATION})),
    ("gel", frozenset({APPLICATION})),
    ("pour application", frozenset({APPLICATION})),
    ("shampooing", frozenset({APPLICATION})),
    ("vernis", frozenset({APPLICATION})),
    ("pate", frozenset({APPLICATION})),
    ("lotion", frozenset({APPLICATION})),
    ("mousse", frozenset({APPLICATION})),
    ("gelee", frozenset({APPLICATION})),
    ("collutoire", frozenset({PUFF, APPLICATION})),
    ("bain de bouche", frozenset({ML, APPLICATION})),
    ("suppositoire", frozenset({SUPPOSITORY})),
    ("ovule", frozenset({SUPPOSITORY})),
    ("transdermique", frozenset({PATCH})),
    ("emplatre", frozenset({PATCH})),
    ("patch", frozenset({PATCH})),
    ("pansement", frozenset({PATCH})),
    ("systeme de diffusion", frozenset({PATCH})),
    ("dispositif", frozenset({PATCH, PUFF})),
]
_PATTERNS = [(re.compile(rf"\b{re.escape(w)}s?\b"), units) for w, units in _WORDS]
# A drop of a solution for injection or infusion makes no sense: "solution" allows drops only
# when the form is not for injection.
_INJECTION = re.compile(r"\b(injectable|perfusion|usage parenteral|dialyse|hemofiltration)")

# Pack words of the prescription form (documents.form.PACK_WORDS) and the label words that
# show the medicine comes in such packs. A box fits everything.
PACKS = {"flacon": ("flacon",), "tube": ("tube",), "récipient": ("recipient",),
         "sachet": ("sachet",), "pot": ("pot",)}


def dose_units(form: str, name: str = "", labels: Iterable[str] = ()) -> frozenset[str] | None:
    """The counted units a dose of this medicine fits (AMOUNT units always fit besides), or
    None when the form says nothing we know (then no unit is refused)."""
    text = " ".join(normalise_name(t) for t in (form, name))
    units: set[str] = set()
    for pattern, allowed in _PATTERNS:
        if pattern.search(text):
            units |= allowed
    if not units:
        return None
    packs = " ".join(normalise_name(t) for t in labels)
    for pattern, allowed in _PATTERNS:  # "20 sachet(s)", "10 ampoule(s)": the packs say it too
        if allowed <= {SACHET, AMPOULE} and pattern.search(packs):
            units |= allowed
    if _INJECTION.search(text) and not re.search(r"\b(buvable|goutte|collyre)", text):
        units.discard(DROP)
    return frozenset(units)


def fits_pack(pack: str, labels: Iterable[str]) -> bool:
    """Whether `pack` (a pack word of the form: boîte, flacon, tube...) is how this medicine is
    presented. Unknown presentations (no label) accept anything."""
    words = PACKS.get(pack)
    if words is None:
        return True
    labels = [normalise_name(t) for t in labels]
    if not labels:
        return True
    return any(re.search(rf"\b{w}s?\b", label) for label in labels for w in words)
