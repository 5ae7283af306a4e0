"""Professions of the national nomenclature TRE_G15 (OID 1.2.250.1.213.1.1.4.5).

Embedded rather than read from the CI-SIS value sets: the gateway must run without ../shared,
and this short list changes rarely. Labels are the official ones.
"""

from __future__ import annotations

OID_PROFESSION = "1.2.250.1.213.1.1.4.5"

PROFESSIONS: dict[str, str] = {
    "10": "Médecin",
    "21": "Pharmacien",
    "26": "Audioprothésiste",
    "28": "Opticien-Lunetier",
    "31": "Assistant dentaire",
    "32": "Physicien médical",
    "35": "Aide-soignant",
    "36": "Ambulancier",
    "37": "Auxiliaire de puériculture",
    "38": "Préparateur en pharmacie hospitalière",
    "39": "Préparateur en pharmacie (officine)",
    "40": "Chirurgien-Dentiste",
    "50": "Sage-Femme",
    "60": "Infirmier",
    "69": "Infirmier psychiatrique",
    "70": "Masseur-Kinésithérapeute",
    "80": "Pédicure-Podologue",
    "81": "Orthoprothésiste",
    "82": "Podo-Orthésiste",
    "83": "Orthopédiste-Orthésiste",
    "84": "Oculariste",
    "85": "Epithésiste",
    "86": "Technicien de laboratoire médical",
    "91": "Orthophoniste",
    "92": "Orthoptiste",
    "94": "Ergothérapeute",
    "95": "Diététicien",
    "96": "Psychomotricien",
    "98": "Manipulateur ERM",
}
