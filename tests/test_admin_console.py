"""The web console in a real browser: Debian's Chromium, driven by Selenium through Debian's
chromedriver, against the running `mssgw serve`. One session walks what an administrator does:
log in with the second factor, add a professional (first with a wrong RPPS key, whose message
shows next to the field), suspend the mailbox, revoke a certificate, import a whitelist, and
find each action in the audit view. Screenshots of every step are saved under
var/test-screenshots/ (printed in the output)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import pytest
from admin_helpers import DOMAIN, PASSWORD, RPPS_BAD_KEY, RPPS_OK, whitelist
from admin_server import admin_gateway  # noqa: F401 (fixture)
from conftest import ROOT, require

from gateway.admins import totp
from gateway.directory.demo import doctor_address

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Flags for a headless Chromium in a container with no network beyond loopback.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-dev-shm-usage", "--window-size=1280,1000"]


@pytest.fixture
def browser(tmp_path):
    require(Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(),
            "chromium and chromium-driver are not installed (Debian packages; `make test`"
            " installs them)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    # The gateway's certificate comes from its own test CA, which this fresh profile does not
    # know; the TLS itself is real.
    options.accept_insecure_certs = True
    # An explicit driver path: Selenium Manager would otherwise try to download one.
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def shots(request):
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = ROOT / "var" / "test-screenshots" / f"{request.node.name}-{stamp}"
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {folder}")
    return folder


def test_console_walk_in_chromium(admin_gateway, browser, shots, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By

    admins, base = admin_gateway
    n = iter(range(1, 100))

    def shot(name: str) -> None:
        browser.save_screenshot(str(shots / f"{next(n):02d}-{name}.png"))

    def fill(values: dict[str, str]) -> None:
        for name, value in values.items():
            field = browser.find_element(By.NAME, name)
            field.clear()
            field.send_keys(value)

    def text(css: str) -> str:
        return browser.find_element(By.CSS_SELECTOR, css).text

    def go(element) -> None:
        """Click something that loads a page, and wait for the new page (a click returns
        before the navigation it starts)."""
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.support import expected_conditions
        from selenium.webdriver.support.wait import WebDriverWait

        old = browser.find_element(By.TAG_NAME, "html")
        element.click()

        def gone(driver) -> bool:  # noqa: ANN001
            # Mid-navigation chromedriver may answer "Node with given id does not belong to
            # the document" instead of a stale-element error: the old page is gone either way.
            try:
                return bool(expected_conditions.staleness_of(old)(driver))
            except WebDriverException as exc:
                return "does not belong to the document" in str(exc)

        WebDriverWait(browser, 30).until(gone)

    # 1. Log in: password, then the TOTP code of alice's authenticator.
    browser.get(base + "/console/")
    assert browser.current_url.endswith("/console/login")
    fill({"name": "alice", "password": PASSWORD, "code": "000000"})
    go(browser.find_element(By.ID, "login"))
    assert text("#login-error") == "Connexion : nom, mot de passe ou code erroné"
    shot("login-refused")
    fill({"name": "alice", "password": PASSWORD, "code": totp.code(admins.totp_secret)})
    go(browser.find_element(By.ID, "login"))
    assert browser.find_element(By.TAG_NAME, "h1").text == "Tableau de bord"
    assert "alice" in text("#whoami")
    shot("dashboard")

    # 2. Add a professional: a wrong RPPS key is refused, its message next to the field.
    go(browser.find_element(By.LINK_TEXT, "Boîtes aux lettres"))
    go(browser.find_element(By.ID, "add-professional"))
    house = f"dr.house@{DOMAIN}"
    fill({"email": house, "rpps": RPPS_BAD_KEY, "given_name": "Gregory",
          "family_name": "House", "profession": "10", "specialty": "SM26"})
    go(browser.find_element(By.ID, "save"))
    error = text("#e-rpps")  # the CLI's rule and message, in French
    assert error == (f"RPPS : « {RPPS_BAD_KEY} » n'est pas valide : la clé de contrôle du RPPS"
                     " (Luhn) ne correspond pas")
    assert browser.find_element(By.ID, "f-rpps").get_attribute("aria-invalid") == "true"
    assert browser.find_element(By.ID, "f-family_name").get_attribute("value") == "House"
    shot("rpps-key-refused")
    fill({"rpps": RPPS_OK})
    go(browser.find_element(By.ID, "save"))
    assert text("#done") == "Boîte aux lettres créée."
    assert house in browser.page_source
    shot("professional-added")

    # 2b. Change its fields: the same rule, the message next to the field, nothing half-done.
    go(browser.find_element(By.ID, "edit"))
    assert browser.find_element(By.ID, "f-family_name").get_attribute("value") == "House"
    fill({"specialty": "S-M", "phone": "01 23 45 67 89"})
    go(browser.find_element(By.ID, "save"))
    assert text("#e-specialty") == (
        "Spécialité : « S-M » n'est pas valide : une spécialité est un code TRE_R38, comme SM26"
        " ou SM54")
    assert browser.find_element(By.ID, "f-phone").get_attribute("value") == "01 23 45 67 89"
    shot("edit-refused")
    fill({"specialty": "SM54"})
    go(browser.find_element(By.ID, "save"))
    assert text("#done") == "Boîte aux lettres modifiée."
    assert "SM54" in browser.page_source and "01 23 45 67 89" in browser.page_source

    # 3. Suspend the mailbox.
    go(browser.find_element(By.XPATH, "//button[text()='Suspendre la boîte']"))
    assert text("#state") == "suspendue"
    shot("mailbox-suspended")

    # 4. Issue a certificate for the demo doctor, then revoke it.
    go(browser.find_element(By.LINK_TEXT, "Certificats"))
    fill({"subject": doctor_address(DOMAIN)})
    browser.find_element(By.CSS_SELECTOR, "select#f-kind option[value='personal-auth']").click()
    go(browser.find_element(By.XPATH, "//button[text()='Émettre']"))
    assert text("#done") == "Certificat émis."
    row = browser.find_element(By.CSS_SELECTOR, "#certificates tbody tr")
    serial = row.get_attribute("id").removeprefix("cert-")
    row.find_element(By.CSS_SELECTOR, "option[value='key-compromise']").click()
    go(row.find_element(By.XPATH, ".//button[text()='Révoquer']"))
    assert text("#done").startswith("Certificat révoqué")
    assert "révoqué (key-compromise)" in text(f"#cert-{serial} .status")
    shot("certificate-revoked")

    # 5. Import a whitelist file.
    go(browser.find_element(By.LINK_TEXT, "Domaines de confiance"))
    upload = tmp_path / "listeblanchemssante.xml"
    upload.write_bytes(whitelist([("peer.mssante.fr", "CN=mx.peer.example,O=Peer,C=FR")]))
    browser.find_element(By.ID, "f-file").send_keys(str(upload))
    go(browser.find_element(By.ID, "import"))
    report = text("#import-report")
    assert "1 ajouté(s), 0 retiré(s), 0 modifié(s) (DN du certificat de l'opérateur)" in report
    assert "+ peer.mssante.fr" in report
    shot("whitelist-imported")

    # 6. Each action, in the audit view, under alice's name.
    go(browser.find_element(By.LINK_TEXT, "Journal d'audit"))
    fill({"acteur": "admin:alice"})
    go(browser.find_element(By.XPATH, "//button[text()='Chercher']"))
    rows = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#audit tbody tr")]
    shot("audit")
    for action, target in (("admin.login", "alice"), ("directory.add", house),
                           ("directory.update", house),
                           ("directory.suspend", house), ("pki.issue", doctor_address(DOMAIN)),
                           ("pki.revoke", doctor_address(DOMAIN)),
                           ("trust.import-whitelist", "")):
        assert any(action in r and target in r for r in rows), (action, rows)
    # Logging out ends the session: the console asks for a login again.
    go(browser.find_element(By.XPATH, "//button[text()='Se déconnecter']"))
    browser.get(base + "/console/audit")
    assert browser.current_url.endswith("/console/login")
    assert os.listdir(shots)
    shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)
