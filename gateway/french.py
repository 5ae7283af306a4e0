"""French for the faces that speak it: every refusal the console can show (and the registry's
refusals the mail flows answer with), said in French from the same error.

The rules raise one `GatewayError` whose message is an English `gateway.texts.Text` (the CLI and
the API say it as it is). The console says it with `say(exc)`: the French template of the same
message, filled with the same parameters (themselves said in French when they are Texts; a
parameter named `field` becomes the field's French name). One set of rules, two languages.

Why a dictionary and not gettext: one target language of some two hundred messages, kept beside
the code and checked by tests (tests/test_messages.py: every message a console-reachable module
can raise has its French here; none is built in a way French cannot follow); gettext's .po/.mo
files and their compile step would add tooling and nothing else.

A message missing here (an error from an unexpected place) is shown in English after a French
sentence saying the operation was refused, and logged, so it gets translated.
"""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal
from typing import Any

from gateway.texts import Text, text_of

log = logging.getLogger("mssgw.web")

# The French names of the fields messages start with ("rpps: ...", "{field}: ...").
FIELDS: dict[str, str] = {
    "email": "adresse", "rpps": "RPPS", "adeli": "ADELI", "finess": "FINESS", "siret": "SIRET",
    "ins": "INS", "family_name": "nom", "given_name": "prénom", "profession": "profession",
    "specialty": "spécialité", "savoir_faire": "savoir-faire", "structure": "structure",
    "title": "titre", "phone": "téléphone", "display_name": "nom affiché", "name": "nom",
    "kind": "type", "address": "adresse postale", "birth_name": "nom de naissance",
    "given_names": "prénoms de naissance", "sex": "sexe", "birth_date": "date de naissance",
    "birth_place": "lieu de naissance", "password": "mot de passe", "domain": "domaine",
    "state": "état", "status": "état", "subject": "titulaire", "days": "durée",
    "reason": "motif", "ca": "autorité", "label": "libellé", "scope": "droits",
    "scopes": "droits", "admin": "administrateur", "role": "rôle", "limit": "taille de page",
    "offset": "début", "since": "depuis", "patient": "patient", "by": "prescripteur",
    "objects_to_prescriber_feedback": "opposition", "organisation": "organisation",
    "Nom": "Nom", "dn": "DN", "certificate": "certificat", "token": "jeton", "file": "fichier",
}

CATALOGUE: dict[str, str] = {
    # --- the shapes of field errors (gateway/errors.py, directory/validate.py) ---------------
    "{field}: {value!r} is invalid: {rule}": "{field} : « {value} » n'est pas valide : {rule}",
    "{field}: {rule}": "{field} : {rule}",
    # --- identifiers (gateway/identifiers.py) ------------------------------------------------
    "an RPPS or ADELI number is required": "un numéro RPPS ou ADELI est obligatoire",
    "a FINESS or SIRET number is required": "un numéro FINESS ou SIRET est obligatoire",
    "an RPPS number is 11 digits": "un numéro RPPS compte 11 chiffres",
    "the RPPS check digit (Luhn) does not match":
        "la clé de contrôle du RPPS (Luhn) ne correspond pas",
    "an ADELI number is 9 digits": "un numéro ADELI compte 9 chiffres",
    "the ADELI check digit (Luhn) does not match":
        "la clé de contrôle de l'ADELI (Luhn) ne correspond pas",
    "a FINESS number is 9 characters: department (2 digits, 2A or 2B) then 7 digits":
        "un numéro FINESS compte 9 caractères : le département (2 chiffres, 2A ou 2B) puis"
        " 7 chiffres",
    "the FINESS check digit (Luhn) does not match":
        "la clé de contrôle du FINESS (Luhn) ne correspond pas",
    "a SIRET number is 14 digits": "un numéro SIRET compte 14 chiffres",
    "the SIRET check (La Poste rule) does not match":
        "le contrôle du SIRET (règle de La Poste) ne correspond pas",
    "the SIRET check digit (Luhn) does not match":
        "la clé de contrôle du SIRET (Luhn) ne correspond pas",
    "an INS is 15 characters: sex (1, 2, or 3, 4, 7, 8 for temporary numbers), year, month,"
    " department (digits, 2A or 2B), commune, order and a 2-digit key":
        "un INS compte 15 caractères : le sexe (1, 2, ou 3, 4, 7, 8 pour un numéro provisoire),"
        " l'année, le mois, le département (chiffres, 2A ou 2B), la commune, le rang et une clé"
        " de 2 chiffres",
    "the INS key does not match (97 - N mod 97)":
        "la clé de l'INS ne correspond pas (97 - N mod 97)",
    "month {month} is not a valid INS month": "le mois {month} n'est pas un mois d'INS valable",
    "a CIS code is 8 digits starting with 6": "un code CIS compte 8 chiffres et commence par 6",
    "a CIP13 code is 13 digits starting with 34009":
        "un code CIP13 compte 13 chiffres et commence par 34009",
    "the CIP13 check digit (EAN-13) does not match":
        "la clé du CIP13 (EAN-13) ne correspond pas",
    # --- fields (directory/validate.py, identity.py) ------------------------------------------
    "a domain name is dot-separated labels of letters, digits and hyphens":
        "un nom de domaine est une suite de libellés séparés par des points (lettres, chiffres"
        " et tirets)",
    "an address is local@domain; the local part uses letters, digits and . _ + -":
        "une adresse s'écrit local@domaine ; la partie locale n'a que des lettres, des chiffres"
        " et . _ + -",
    "must not be empty": "ne doit pas être vide",
    "at most {n} characters": "{n} caractères au plus",
    "control characters are not allowed": "les caractères de contrôle sont interdits",
    "a phone number is digits, spaces, . - ( ) and a leading +":
        "un numéro de téléphone s'écrit avec des chiffres, des espaces, . - ( ) et un + initial",
    "a profession is a TRE_G15 code (e.g. 10 médecin, 21 pharmacien, 60 infirmier)":
        "une profession est un code TRE_G15 (par exemple 10 médecin, 21 pharmacien,"
        " 60 infirmier)",
    "a specialty is a TRE_R38 code such as SM26 or SM54":
        "une spécialité est un code TRE_R38, comme SM26 ou SM54",
    "a savoir-faire is a JDV_J107 code of the RPPS, e.g. C35 (compétence cancérologie), CAPA06"
    " (capacité de gérontologie), SST24 (FST sommeil), SM48 (rhumatologie)":
        "un savoir-faire est un code JDV_J107 du RPPS, par exemple C35 (compétence"
        " cancérologie), CAPA06 (capacité de gérontologie), SST24 (FST sommeil), SM48"
        " (rhumatologie)",
    "sex is F or M": "le sexe est F ou M",
    "a date is YYYY-MM-DD": "une date s'écrit AAAA-MM-JJ",
    "must be a past date after 1880": "doit être une date passée, après 1880",
    "an INSEE commune code is 5 characters (99xxx for a birth abroad)":
        "un code commune INSEE compte 5 caractères (99xxx pour une naissance à l'étranger)",
    "its first digit {digit} contradicts sex {sex}":
        "son premier chiffre, {digit}, contredit le sexe {sex}",
    "its birth year {year} contradicts the birth date {born}":
        "son année de naissance, {year}, contredit la date de naissance {born}",
    "its birth month {month} contradicts the birth date {born}":
        "son mois de naissance, {month}, contredit la date de naissance {born}",
    "a professional needs an RPPS (or ADELI) number":
        "un professionnel a besoin d'un numéro RPPS (ou ADELI)",
    "a structure needs a FINESS (or SIRET) number":
        "une structure a besoin d'un numéro FINESS (ou SIRET)",
    "a {kind} needs a FINESS (or SIRET) number":
        "une entrée {kind} a besoin d'un numéro FINESS (ou SIRET)",
    "a TRE_G15 code is digits (e.g. 10, 21)":
        "un code TRE_G15 ne compte que des chiffres (par exemple 10, 21)",
    "one of {choices}": "l'une de ces valeurs : {choices}",
    # --- the directory (directory/sqlite.py, repository.py, admin.py) -------------------------
    "directory: this gateway has no domain of its own yet: run `mssgw init` first":
        "annuaire : cette passerelle n'a pas encore de domaine à elle ; lancez d'abord"
        " `mssgw init`",
    "a patient's address is in {domain}": "l'adresse d'un patient est dans {domain}",
    "{domain} holds patients' mailboxes only": "{domain} n'accueille que les boîtes des patients",
    "{domain} is not one of our domains ({ours}); add it with"
    " `mssgw trust add-domain {domain} --own`":
        "{domain} n'est pas l'un de nos domaines ({ours}) ; ajoutez-le dans « Domaines de"
        " confiance » comme domaine à nous",
    "must be the address of an organisation (ORG) mailbox":
        "doit être l'adresse de la boîte d'une structure (ORG)",
    "does not apply to a {kind} mailbox": "ne s'applique pas à une boîte {kind}",
    "ins: a patient's INS is their address: delete the mailbox and add it again":
        "INS : l'INS d'un patient est son adresse : supprimez la boîte et créez-la à nouveau",
    "update: nothing to change (give at least one field option)":
        "modification : rien à changer (modifiez au moins un champ)",
    "state: {address} is already {state}": "état : {address} est déjà {state}",
    "structure: {address} is the structure of {count} professional(s) ({members}); move or"
    " delete them first":
        "structure : {address} est la structure de {count} professionnel(s) ({members}) ;"
        " déplacez-les ou supprimez-les d'abord",
    "not an RFC 4514 distinguished name (e.g. CN=mx.example.fr,O=X,C=FR)":
        "ce n'est pas un nom distinctif RFC 4514 (par exemple CN=mx.example.fr,O=X,C=FR)",
    "our own domains carry no peer certificate DN":
        "nos propres domaines n'ont pas de DN de certificat d'opérateur",
    "a peer domain needs the subject DN of its operator's certificate":
        "un domaine d'un autre opérateur a besoin du DN du certificat de cet opérateur",
    "domain: {domain!r} is already listed (source: {source})":
        "domaine : « {domain} » est déjà dans la liste (origine : {source})",
    "domain: {domain!r} still holds {count} mailbox(es); delete them first":
        "domaine : « {domain} » contient encore {count} boîte(s) ; supprimez-les d'abord",
    "whitelist: cannot read {path}: {reason}":
        "liste blanche : impossible de lire {path} : {reason}",
    "{file}: generated {generated}, older than the list already imported ({previous}): refused"
    " (use --allow-older to import it anyway)":
        "{file} : générée le {generated}, plus ancienne que la liste déjà importée"
        " ({previous}) : refusée (cochez « accepter une liste plus ancienne » pour l'importer"
        " quand même)",
    "{file}: would remove {removed} of the {listed} peer domains imported from the whitelist"
    " ({share:.0%}), more than the {allowed:.0%} allowed ([trust] max_removed_share): refused"
    " (check the file; use --allow-removals to import it anyway)":
        "{file} : retirerait {removed} des {listed} domaines importés de la liste blanche"
        " ({share:.0%}), plus que les {allowed:.0%} permis ([trust] max_removed_share) :"
        " refusée (vérifiez le fichier ; cochez « accepter les retraits » pour l'importer"
        " quand même)",
    "{file}: would remove {removed} of the {before} remote entries imported before ({share:.0%}),"
    " more than the {allowed:.0%} allowed ([trust] max_removed_share): refused (check the file;"
    " use --allow-removals to import it anyway)":
        "{file} : retirerait {removed} des {before} entrées distantes importées auparavant"
        " ({share:.0%}), plus que les {allowed:.0%} permis ([trust] max_removed_share) :"
        " refusé (vérifiez le fichier)",
    "{name} is one of our own domains: its entry is ignored":
        "{name} est l'un de nos propres domaines : son entrée est ignorée",
    "email: no mailbox {address!r} in the directory":
        "adresse : aucune boîte « {address} » dans l'annuaire",
    " (mailbox {owner})": " (boîte {owner})",
    "{field}: {value!r} is already registered{whose}":
        "{field} : « {value} » est déjà enregistré{whose}",
    "domain: {name!r} is not a trust-space domain of this gateway":
        "domaine : « {name} » n'est pas un domaine de l'espace de confiance de cette passerelle",
    "a mailbox kind is PER, ORG, APP or PATIENT":
        "un type de boîte est PER, ORG, APP ou PATIENT",
    "a state is active or suspended": "un état est active ou suspended",
    "give an RPPS number (11 digits) or, for professions without one, an ADELI number":
        "indiquez un numéro RPPS (11 chiffres) ou, pour les professions qui n'en ont pas, un"
        " numéro ADELI",
    "give an RPPS or an ADELI number, not both": "indiquez un RPPS ou un ADELI, pas les deux",
    "give a FINESS number (9 characters) or a SIRET (14 digits)":
        "indiquez un numéro FINESS (9 caractères) ou un SIRET (14 chiffres)",
    "give a FINESS or a SIRET number, not both": "indiquez un FINESS ou un SIRET, pas les deux",
    "a structure is a pharmacy, practice, hospital or other":
        "une structure est une pharmacie (pharmacy), un cabinet (practice), un établissement"
        " (hospital) ou autre (other)",
    "is not a mailbox field": "n'est pas un champ d'une boîte aux lettres",
    # --- the whitelist import and its report (directory/whitelist.py, admin.py) ---------------
    "{file}: not well-formed XML: {detail}": "{file} : XML mal formé : {detail}",
    "{file}: a DOCTYPE/DTD is not allowed in the whitelist (entities refused)":
        "{file} : un DOCTYPE ou une DTD est interdit dans la liste blanche (entités refusées)",
    "{file}: the file is truncated before the end of the domain list: refused (importing it"
    " would remove the domains that are missing)":
        "{file} : le fichier est tronqué avant la fin de la liste des domaines : refusé"
        " (l'importer retirerait les domaines manquants)",
    "{file}: the file ends without </ListeBlancheMSSante>; the domain list itself is complete":
        "{file} : le fichier se termine sans </ListeBlancheMSSante> ; la liste des domaines"
        " elle-même est complète",
    "{file}: larger than {mb} MB: refused": "{file} : plus de {mb} Mo : refusé",
    "{file}: root element is {tag}, not ListeBlancheMSSante in namespace {ns}":
        "{file} : l'élément racine est {tag}, et non ListeBlancheMSSante de l'espace de noms"
        " {ns}",
    "{file}: no ListeDomaines element": "{file} : pas d'élément ListeDomaines",
    "entry skipped: {reason}": "entrée ignorée : {reason}",
    "entry skipped: {name} has no DNCertificatOperateur":
        "entrée ignorée : {name} n'a pas de DNCertificatOperateur",
    "warning: {warning}": "attention : {warning}",
    "imported {file} (generated {generated}): {entries} entries, {domains} domains":
        "{file} importée (générée le {generated}) : {entries} entrées, {domains} domaines",
    "unknown": "date inconnue",
    "added {added}, removed {removed}, changed {changed} (operator certificate DN)":
        "{added} ajouté(s), {removed} retiré(s), {changed} modifié(s) (DN du certificat de"
        " l'opérateur)",
    "{mark} ... {count} domains (--json lists them)":
        "{mark} ... {count} domaines (`mssgw trust import-whitelist --json` les énumère)",
    # --- passwords (directory/passwords.py) ----------------------------------------------------
    "password: too short: at least {n} characters are required":
        "mot de passe : trop court : {n} caractères au moins",
    "password: too long: at most {n} characters":
        "mot de passe : trop long : {n} caractères au plus",
    "password: must not start or end with spaces or contain line breaks":
        "mot de passe : ne doit ni commencer ni finir par une espace, ni contenir de retour à"
        " la ligne",
    # --- administrators, tokens, logins (admins/) ----------------------------------------------
    "name: no administrator account {name!r}": "nom : aucun compte d'administration « {name} »",
    "role: {name} is an auditor: read-only, no changes":
        "rôle : {name} est auditeur : lecture seule, aucune modification",
    "a name is a lower-case letter then letters, digits, . _ - (at most 63)":
        "un nom commence par une lettre minuscule, suivie de lettres, de chiffres et de . _ -"
        " (63 au plus)",
    "a role is administrator or auditor": "un rôle est administrator ou auditor",
    "password: an account needs a password (with TOTP) or --certificate":
        "mot de passe : un compte a besoin d'un mot de passe (avec TOTP) ou d'un certificat",
    "name: administrator {name!r} already exists": "nom : l'administrateur « {name} » existe déjà",
    "{field}: this administrator already exists": "{field} : cet administrateur existe déjà",
    "certificate: already bound to another administrator":
        "certificat : déjà lié à un autre administrateur",
    "login: wrong name, password or code": "connexion : nom, mot de passe ou code erroné",
    "login: too many failed attempts: this account is locked until {until} UTC":
        "connexion : trop d'échecs : ce compte est bloqué jusqu'à {until} UTC",
    "login: this certificate is not bound to an administrator":
        "connexion : ce certificat n'est lié à aucun administrateur",
    "login: this link is unknown, used or expired":
        "connexion : ce lien est inconnu, déjà utilisé ou expiré",
    "login: no valid client certificate was presented":
        "connexion : aucun certificat client valable n'a été présenté",
    "a token needs a label of 1 to 100 characters":
        "un jeton a besoin d'un libellé de 1 à 100 caractères",
    "a token lasts 1 to {n} days": "un jeton dure de 1 à {n} jours",
    "token: no API token {token!r}": "jeton : aucun jeton d'API « {token} »",
    "token: unknown or malformed API token": "jeton : jeton d'API inconnu ou mal formé",
    "token: {token} is {state}": "jeton : {token} est {state}",
    "token: the account {name} is disabled": "jeton : le compte {name} est désactivé",
    "token: an API token cannot create tokens; log in to the console":
        "jeton : un jeton d'API ne peut pas créer de jetons ; connectez-vous à la console",
    "scope: {scope!r} is invalid: a scope is RESOURCE:read or RESOURCE:write, RESOURCE one of *,"
    " {resources}":
        "droits : « {scope} » n'est pas valable : un droit s'écrit RESSOURCE:read ou"
        " RESSOURCE:write, RESSOURCE parmi *, {resources}",
    "scope: give at least one scope, e.g. *:read":
        "droits : indiquez au moins un droit, par exemple *:read",
    "scope: this token does not grant {scope}": "droits : ce jeton n'accorde pas {scope}",
    "must be 0 or more": "doit être positif ou nul",
    "must be between 1 and {n}": "doit être entre 1 et {n}",
    # --- certificates (pki/) ---------------------------------------------------------------------
    "a certificate kind is one of {kinds}": "un type de certificat est l'un de : {kinds}",
    "give the mailbox address (or a host name)":
        "indiquez l'adresse de la boîte (ou un nom d'hôte)",
    "out of range (1..36500)": "hors des limites (1 à 36500)",
    "a number of days": "un nombre de jours",
    "a revocation reason is one of {reasons}": "un motif de révocation est l'un de : {reasons}",
    "a CA is one of {cas}": "une autorité est l'une de : {cas}",
    "{address}: no such mailbox in the directory (add it first)":
        "{address} : pas de boîte à cette adresse dans l'annuaire (créez-la d'abord)",
    " (it may hold: {kinds})": " (elle peut détenir : {kinds})",
    " (it may hold none)": " (elle ne peut en détenir aucun)",
    "{address}: a {mailbox_kind} mailbox cannot hold a {kind} certificate{hint}":
        "{address} : une boîte {mailbox_kind} ne peut pas détenir de certificat {kind}{hint}",
    "{address}: the mailbox is suspended": "{address} : la boîte est suspendue",
    "the gateway has no server certificate yet: run `mssgw init`":
        "la passerelle n'a pas encore de certificat serveur : lancez `mssgw init`",
    "serial: {serial!r} is not a hexadecimal certificate serial number":
        "numéro : « {serial} » n'est pas un numéro de série de certificat hexadécimal",
    "[pki] ca_passphrase_file {path}: {reason}": "[pki] ca_passphrase_file {path} : {reason}",
    "[pki] ca_passphrase_file {path} is empty": "[pki] ca_passphrase_file {path} est vide",
    "the {ca} is missing under {path}: run `mssgw init`":
        "{ca} manque sous {path} : lancez `mssgw init`",
    "the CA keys are passphrase-protected: set {variable} or [pki] ca_passphrase_file":
        "les clés des autorités sont protégées par une phrase secrète : définissez {variable}"
        " ou [pki] ca_passphrase_file",
    "cannot open the {ca} key: wrong CA passphrase?":
        "impossible d'ouvrir la clé de {ca} : mauvaise phrase secrète ?",
    "the {ca} key is not an RSA key": "la clé de {ca} n'est pas une clé RSA",
    "the {ca} is missing: run `mssgw init`": "{ca} manque : lancez `mssgw init`",
    "common name: must not be empty": "nom commun : ne doit pas être vide",
    "common name: {name!r} is longer than 64 characters":
        "nom commun : « {name} » dépasse 64 caractères",
    "days: {days} is out of range (1..36500)": "durée : {days} est hors des limites (1 à 36500)",
    "a server certificate needs a host name": "un certificat serveur a besoin d'un nom d'hôte",
    "email: {email!r} is not an e-mail address": "adresse : « {email} » n'est pas une adresse",
    "host name: {name!r} is not a DNS name": "nom d'hôte : « {name} » n'est pas un nom DNS",
    "IP address: {ip!r} is not an IP address": "adresse IP : « {ip} » n'est pas une adresse IP",
    "subject: {reason}": "titulaire : {reason}",
    "kind: {kind!r} is not a certificate kind (one of: {kinds})":
        "type : « {kind} » n'est pas un type de certificat (l'un de : {kinds})",
    "certificate {serial}: no such certificate issued by this gateway":
        "certificat {serial} : aucun certificat de ce numéro n'a été émis par cette passerelle",
    "certificate {serial}: its file is missing from certs/":
        "certificat {serial} : son fichier manque dans certs/",
    "reason: {reason!r} is not a revocation reason (one of: {reasons})":
        "motif : « {reason} » n'est pas un motif de révocation (l'un de : {reasons})",
    "reason: {reason!r} is not a revocation reason":
        "motif : « {reason} » n'est pas un motif de révocation",
    "certificate {serial} is already revoked ({reason}, {at})":
        "le certificat {serial} est déjà révoqué ({reason}, {at})",
    "certificate {serial} is already revoked": "le certificat {serial} est déjà révoqué",
    "certificate {serial} is revoked: its key is not exported":
        "le certificat {serial} est révoqué : sa clé n'est pas exportée",
    "certificate {serial}: its private key is missing":
        "certificat {serial} : sa clé privée manque",
    "PKCS#12 password: must not be empty": "mot de passe du PKCS#12 : ne doit pas être vide",
    "unexpected key type": "type de clé inattendu",
    "not a CRL (PEM or DER expected)": "ce n'est pas une liste de révocation (PEM ou DER attendu)",
    "CRL issuer {issuer} is not a known CA, or its signature does not check: import its anchor"
    " first (`mssgw pki add-anchor`)":
        "l'émetteur de la liste de révocation, {issuer}, n'est pas une autorité connue, ou sa"
        " signature n'est pas valable : importez d'abord son ancre (`mssgw pki add-anchor`)",
    "a newer CRL of this issuer is already imported ({at})":
        "une liste de révocation plus récente de cet émetteur est déjà importée ({at})",
    # --- prescriptions (prescriptions/) ----------------------------------------------------------
    "a status is one of {statuses}": "un état est l'un de : {statuses}",
    "give the prescriber's address: the cancellation is theirs":
        "indiquez l'adresse du prescripteur : l'annulation est la sienne",
    "prescription {identifier}: not in the registry":
        "ordonnance {identifier} : absente du registre",
    "prescription {identifier}: already registered": "ordonnance {identifier} : déjà enregistrée",
    "{address} is not a pharmacy mailbox: only pharmacies dispense":
        "{address} n'est pas la boîte d'une pharmacie : seules les pharmacies délivrent",
    "a prescription needs at least one line": "une ordonnance a besoin d'au moins une ligne",
    "line {pos}: the quantity must be positive": "ligne {pos} : la quantité doit être positive",
    "line {pos}: renewals cannot be negative":
        "ligne {pos} : les renouvellements ne peuvent pas être négatifs",
    "line {pos}: line id {line_id!r} is repeated":
        "ligne {pos} : l'identifiant de ligne « {line_id} » est répété",
    "the validity end {end} is before the prescription date":
        "la fin de validité, {end}, précède la date de l'ordonnance",
    "identifier {identifier!r}: {reason}": "identifiant « {identifier} » : {reason}",
    "an identifier has {length} characters, not {found}":
        "un identifiant compte {length} caractères, pas {found}",
    "only 0-9 and A-Z are allowed (found {bad!r})":
        "seuls 0-9 et A-Z sont permis (trouvé : « {bad} »)",
    " on {date}": " le {date}",
    "prescription {ident} was cancelled by its prescriber{when}":
        "l'ordonnance {ident} a été annulée par son prescripteur{when}",
    "prescription {ident} is already fully dispensed: it cannot be used again":
        "l'ordonnance {ident} est déjà entièrement délivrée : elle ne peut plus servir",
    "prescription {ident} expired on {dispensable_until} (renewals end 12 months after the"
    " prescription)":
        "l'ordonnance {ident} a expiré le {dispensable_until} (les renouvellements cessent"
        " 12 mois après l'ordonnance)",
    "prescription {ident} expired on {validity_end}: the first dispensation must happen within"
    " its validity":
        "l'ordonnance {ident} a expiré le {validity_end} : la première délivrance doit avoir"
        " lieu pendant sa validité",
    "a dispensation needs an id (its document id)":
        "une délivrance a besoin d'un identifiant (celui de son document)",
    "dispensation {dispensation_id} has no line":
        "la délivrance {dispensation_id} n'a aucune ligne",
    "prescription {identifier} has no line {line_ref!r} (lines: {known})":
        "l'ordonnance {identifier} n'a pas de ligne « {line_ref} » (lignes : {known})",
    "line {line_ref}: {quantity} is not a quantity (0 or more)":
        "ligne {line_ref} : {quantity} n'est pas une quantité (0 ou plus)",
    "line {line_ref}: nothing delivered needs the reason why":
        "ligne {line_ref} : une ligne non délivrée demande sa raison",
    "prescription {identifier} line {pos} ({label}) is already fully dispensed":
        "ordonnance {identifier}, ligne {pos} ({label}) : déjà entièrement délivrée",
    "prescription {identifier} line {pos} ({label}): {value} {quantity_unit} asked, only"
    " {value2} remain ({value3} × {value4} prescribed, {value5} delivered)":
        "ordonnance {identifier}, ligne {pos} ({label}) : {value} {quantity_unit} demandé(s),"
        " il n'en reste que {value2} ({value3} × {value4} prescrit(s), {value5} délivré(s))",
    "a prescription registered elsewhere is kept with its signed package":
        "une ordonnance enregistrée ailleurs est gardée avec son paquet signé",
    "the prescription has no identifier": "l'ordonnance n'a pas d'identifiant",
    "--older-than-years cannot be negative": "--older-than-years ne peut pas être négatif",
    "prescription {ident}: only its prescriber ({prescriber_address}) may cancel it, not {by}":
        "ordonnance {ident} : seul son prescripteur ({prescriber_address}) peut l'annuler, pas"
        " {by}",
    "prescription {ident} is fully dispensed: too late to cancel it":
        "l'ordonnance {ident} est entièrement délivrée : trop tard pour l'annuler",
    "dispensation {value} was already recorded with different content: nothing changed":
        "la délivrance {value} a déjà été enregistrée avec un autre contenu : rien n'a changé",
    # --- DMP (dmp/) ------------------------------------------------------------------------------
    "give the patient's INS": "indiquez l'INS du patient",
    "document {unique_id}: not in the DMP": "document {unique_id} : absent du DMP",
    "document {unique_id}: already in the DMP": "document {unique_id} : déjà dans le DMP",
    "{name} may not do this: {reason}": "{name} ne peut pas faire cela : {reason}",
    "{name} may not access this record: {reason}":
        "{name} ne peut pas accéder à ce dossier : {reason}",
    "nothing to file: the submission set is empty": "rien à verser : le lot est vide",
    "a document needs a uniqueId": "un document a besoin d'un uniqueId",
    "document {unique_id}: {name} is empty": "document {unique_id} : {name} est vide",
    "document {unique_id}: hash {hash} does not match its bytes ({digest})":
        "document {unique_id} : l'empreinte {hash} ne correspond pas à son contenu ({digest})",
    "document {unique_id}: size {size} does not match its bytes ({size2})":
        "document {unique_id} : la taille {size} ne correspond pas à son contenu ({size2})",
    "document {unique_id} cannot replace {replaces}: it belongs to another patient":
        "le document {unique_id} ne peut pas remplacer {replaces} : il appartient à un autre"
        " patient",
    "document {replaces} is already {value}: replace its latest version ({value2})":
        "le document {replaces} est déjà {value} : remplacez sa dernière version ({value2})",
    # --- the outbound queue (store/) -------------------------------------------------------------
    "queue: {id} is being delivered right now; try again":
        "file : {id} est en cours de distribution ; réessayez",
    "queue id: {queue_id!r} is not a queue id (21 hexadecimal characters)":
        "identifiant : « {queue_id} » n'est pas un identifiant de la file (21 caractères"
        " hexadécimaux)",
    "queue: no message {qid} in the queue": "file : aucun message {qid} dans la file",
    # --- the audit log, the HTTP faces -----------------------------------------------------------
    "audit log: cannot open {path}: {strerror}":
        "journal d'audit : impossible d'ouvrir {path} : {strerror}",
    "since: {value!r} is invalid: a date is YYYY-MM-DD[THH:MM]":
        "depuis : « {value} » n'est pas valable : une date s'écrit AAAA-MM-JJ[THH:MM]",
    "file: over the limit of {limit} bytes": "fichier : plus de {limit} octets",
    "authentication: send `Authorization: Bearer TOKEN` (an API token from `mssgw admin token"
    " create`) or a client certificate bound to an administrator":
        "authentification : connectez-vous (mot de passe et code, ou certificat)",
    "csrf: the form is out of date or was not sent by this console; reload the page and try"
    " again":
        "formulaire : il est périmé ou n'a pas été envoyé par cette console ; rechargez la"
        " page et recommencez",
    "csrf: the login form expired; try again":
        "formulaire : la page de connexion a expiré ; recommencez",
    "page: no such page in the console": "page : cette page n'existe pas dans la console",
}

REFUSED = "Opération refusée"


def _value(value: object) -> object:
    """Dates and decimal numbers written the French way; anything else as it is."""
    if isinstance(value, dt.datetime):
        return f"{value:%d/%m/%Y %H:%M}"
    if isinstance(value, dt.date):
        return f"{value:%d/%m/%Y}"
    if isinstance(value, Decimal):
        return format(value.normalize(), "f").replace(".", ",")
    return value


def _field(value: object) -> str:
    name = str(value)
    return FIELDS.get(name.replace("-", "_"), FIELDS.get(name, name))


def french(message: object) -> str | None:
    """`message` (a Text) in French; None when the catalogue lacks one of its templates."""
    text = text_of(message)
    template = CATALOGUE.get(text.template)
    if template is None:
        return None
    if not text.params:
        return template
    values: dict[str, Any] = {}
    for key, value in text.params.items():
        if key == "field":
            values[key] = _field(value)
        elif isinstance(value, Text):
            said = french(value)
            if said is None:
                return None
            values[key] = said
        else:
            values[key] = _value(value)
    return template.format(**values)


def say(error: BaseException | str) -> str:
    """What the console shows for `error`: its French, or (a message not translated yet) the
    English after a French sentence, logged so that it gets its translation."""
    wording = getattr(error, "french_wording", None)  # the raise site's own, when it has one
    text = error.text if hasattr(error, "text") else text_of(str(error))
    said = wording or french(text)
    if said is None:
        log.warning("no French for the console's message %r", text.template)
        return f"{REFUSED} : {text}"
    return said[:1].upper() + said[1:]
