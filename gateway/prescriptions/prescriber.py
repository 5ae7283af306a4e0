"""Who prescribes, as the prescribing conditions need to know: profession, savoir-faire (the
RPPS's specialty, competences, capacities, FST...), and whether they practise in a hospital.

`Prescriber.from_mailbox` takes it from the trust directory; `specialities_for` tells which
savoir-faire codes (JDV_J107) a speciality named by the drug database ("CARDIOLOGIE", "maladie du
sang", "HEPATO/GASTRO-ENTEROLOGIE", "capacité de gérontologie") stands for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from gateway.directory.codes import SAVOIR_FAIRE
from gateway.directory.model import Mailbox, OrganisationKind
from gateway.drugs.bdpm import normalise_name

MEDECIN = "10"


@dataclass(frozen=True)
class Prescriber:
    address: str
    name: str
    profession: str  # TRE_G15: "10" médecin
    savoir_faire: frozenset[str]  # JDV_J107 codes: the specialty and the others
    hospital: bool  # practises in a hospital structure (organisation kind "hospital")

    @classmethod
    def from_mailbox(cls, mailbox: Mailbox, structure: Mailbox | None = None) -> Prescriber:
        pro = mailbox.professional
        if pro is None:
            return cls(mailbox.address, mailbox.display_name, "", frozenset(), False)
        codes = set(pro.savoir_faire)
        if pro.specialty:
            codes.add(pro.specialty.split("/")[-1].upper())  # "G15_10/SM26" is seen too
        org = structure.organisation if structure is not None else None
        return cls(
            address=mailbox.address,
            name=mailbox.display_name,
            profession=pro.profession,
            savoir_faire=frozenset(codes),
            hospital=org is not None and org.kind is OrganisationKind.HOSPITAL,
        )

    def has_any(self, codes: frozenset[str]) -> bool:
        return bool(self.savoir_faire & codes)

    def speciality_words(self) -> str:
        """Their savoir-faire in words, for messages ("Qualifié en Médecine générale (SM)")."""
        words = [SAVOIR_FAIRE.get(c, c) for c in sorted(self.savoir_faire)]
        return ", ".join(words) if words else "aucune spécialité enregistrée dans l'annuaire"


# The specialities the drug database names, and the savoir-faire that hold them. The BDPM speaks
# of services and competences in its own words; the RPPS codes a speciality (SM), a competence
# (C), a DESC/DNQ (DSM, DEC), a capacity (CAPA) or an FST (SST). A speciality is held by the
# specialists of the discipline (old and 2017-reform DES and their options), the competence of
# the same name, and the DESC/FST that qualify for it (an FST "cancérologie, traitements médicaux"
# lets a pneumologist prescribe an anticancer drug). Names not listed here are matched word by
# word against the savoir-faire labels (`_by_words`), so a new BDPM wording still finds its codes.
_SPECIALITIES: dict[str, tuple[str, ...]] = {
    "oncologie medicale": ("SM35", "SM36", "SM23", "SST03", "SST04", "DSM236", "DEC04"),
    "cancerologie": ("C35", "SM35", "SM36", "SM37", "SM23", "DSM206", "DSM236", "DSM237",
                     "DSM238", "DEC04", "DEC05", "DEC06", "SST03", "SST04"),
    "hematologie": ("SM21", "SM22", "SM23", "SM71", "SM35", "SST03"),
    "maladie du sang": ("C38", "SM21", "SM22", "SM23", "SM71", "DSM215"),
    "medecine interne": ("SM27", "SM72"),
    "neurologie": ("SM32", "SM33", "SM84", "C43", "C47"),
    "neuropediatrie": ("SM88",),
    "pediatrie": ("SM40", "SM87", "SM88", "SM89", "SM90", "C51"),
    "cardiologie": ("SM04", "SM73", "SM79", "SM80", "SM81", "C07", "SST05"),
    "dermatologie": ("SM15", "C15"),
    "rhumatologie": ("SM48", "C62"),
    "psychiatrie": ("SM42", "SM43", "SM33", "SM92", "SM93", "C57", "C58", "C47", "DSM231",
                    "DEC24"),
    "neuropsychiatrie": ("SM33", "C47"),
    "hepato gastro enterologie": ("SM24", "C29"),
    "pneumologie": ("SM41", "SM89", "SM91", "C54"),
    "geriatrie": ("SM18", "DSM213"),
    "capacite de gerontologie": ("CAPA06",),
    "endocrinologie": ("SM16", "SM62", "C37", "C75"),
    "maladies metaboliques": ("SM16", "SM62", "C75"),
    "diabetologie": ("SM62", "SM16", "C36"),
    "nutrition": ("SM62", "C36", "DSM226", "DEC20", "SST22"),
    "endocrinologie diabetologie nutrition": ("SM62", "SM16", "C36", "C37", "C75"),
    "ophtalmologie": ("SM38", "SM85"),
    "gynecologie": ("SM19", "SM20", "SM51", "SM52", "C23", "C25", "CEX22", "CEX24"),
    "obstetrique": ("SM20", "SM51", "C23", "C27", "CEX22", "CEX26"),
    "infectiologie": ("SM58", "DSM228", "DEC22"),
    "maladies infectieuses et tropicales": ("SM58", "DSM228", "DEC22"),
    "nephrologie": ("SM30", "SM83", "C30"),
    "urologie": ("SM12", "C13", "CEX64"),
    "allergologie": ("SM57", "C33", "CAPA03", "DSM201", "DEC02", "SST15"),
    "douleur": ("SST09", "CAPA05", "DSM235", "DEC12"),
    "oto rhino laryngologie": ("SM39", "SM34", "SM86"),
    "medecine et biologie de la reproduction andrologie": ("SST20", "DSM202", "DSM218",
                                                           "DEC03", "DEC13"),
    "chirurgie plastique reconstructrice et esthetique": ("SM10", "C09", "DSM208"),
    "chirurgie maxillo faciale": ("SM06", "SM07", "SM68", "SM77", "C10"),
    "chirurgie de la face et du cou": ("C83", "DSM207", "SM34"),
    "anesthesie reanimation": ("SM02", "SM76", "C03"),
    "genetique medicale": ("SM17", "C72"),
    "medecine vasculaire": ("SM61", "DSM223", "DEC17", "C34", "CAPA04"),
    "angiologie": ("C34", "CAPA04", "SM61"),
    "reanimation medicale": ("SM46", "SM82", "DSM233", "C39"),
    "medecine intensive reanimation": ("SM46", "SM82"),
    "neurochirurgie": ("SM31", "C45"),
    "chirurgie neonatale": ("SM09", "SM69", "SM70", "C68"),
    "medecine d urgence": ("SM59", "DSM220", "DEC14", "CAPA02"),
    "radiologie": ("SM44", "SM55", "SM74", "SM94"),
    "chirurgie orthopedique et traumatologique": ("SM08", "SM70", "C12"),
    "chirurgie digestive et viscerale": ("SM14", "SM78"),
    "chirurgie thoracique et cardiovasculaire": ("SM11", "C11"),
    "chirurgie cardiaque": ("SM11",),
    "formation specialisee transversale sommeil": ("SST24",),
    "radiopharmaceutiques": ("SM28", "C69", "DSM222"),
}


_WORD = re.compile(r"[a-z0-9]+")
_SMALL = frozenset({"de", "du", "des", "la", "le", "les", "et", "en", "d", "l", "a", "ou",
                    "option", "medecine"})


@lru_cache(maxsize=256)
def _by_words(key: str) -> frozenset[str]:
    """Codes whose label holds every significant word of `key` (each word a prefix of one of
    the label's words: "hepato" fits "hépatologie")."""
    wanted = [w for w in _WORD.findall(key) if w not in _SMALL] or _WORD.findall(key)
    found = set()
    for code, label in SAVOIR_FAIRE.items():
        words = _WORD.findall(normalise_name(label))
        if wanted and all(any(lw.startswith(w) for lw in words) for w in wanted):
            found.add(code)
    return frozenset(found)


def specialities_for(name: str) -> frozenset[str]:
    """The savoir-faire codes that hold the speciality `name` as the BDPM writes it (empty when
    none is known: the check then cannot decide and says so)."""
    key = normalise_name(name)
    listed = _SPECIALITIES.get(key)
    if listed:
        return frozenset(listed)
    return _by_words(key)
