"""A shopper buys through the simulator's web chat page in headless Chromium (Selenium), with
the bot and workers running for real; a screenshot is saved under tests/artifacts/."""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from tests.e2e.conftest import Shop
from tests.e2e.test_bot import bot  # noqa: F401 - the bot process fixture
from tests.support import ROOT

pytestmark = pytest.mark.slow

ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")


@pytest.fixture()
def browser() -> Any:
    """Headless Debian Chromium, or a skip saying what is missing."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("chromium / chromium-driver not installed"
                    " (apt-get install -y chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--window-size=1000,1400"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def test_buy_through_the_web_chat(shop: Shop, bot: Any, browser: Any) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    shop.add_product(1, price=12000, units=2)
    uid = shop.add_user(7001, balance=50000)
    from selenium.common.exceptions import StaleElementReferenceException

    wait = WebDriverWait(browser, 40, poll_frequency=0.2,
                         ignored_exceptions=(StaleElementReferenceException,))

    def log_text(driver: Any) -> str:
        return str(driver.find_element(By.ID, "log").text)

    def click(label: str, exact: bool = False) -> None:
        """Click the newest inline button labelled `label` (the log re-renders: retried)."""
        test = f"normalize-space(.)='{label}'" if exact else \
            f"contains(normalize-space(.), '{label}')"
        xpath = f"//div[@id='log']//button[{test}]"

        def press(driver: Any) -> bool:
            found = driver.find_elements(By.XPATH, xpath)
            if not found:
                return False
            found[-1].click()
            return True
        wait.until(press)

    browser.get(f"{shop.telegram.base_url}/#user={uid}")
    wait.until(lambda d: "7001" in d.find_element(By.ID, "status").text)
    box = browser.find_element(By.ID, "text")
    box.send_keys("/start")
    browser.find_element(By.ID, "composer").submit()
    wait.until(lambda d: "Selamat datang" in log_text(d))
    click("Semua Produk")
    wait.until(lambda d: "Produk 1" in log_text(d))
    click("1. Produk 1")
    click("Beli")
    click("+", exact=True)
    wait.until(lambda d: "Jumlah: 2" in log_text(d))
    click("Lanjut")
    click("Lewati")
    click("SALDO")
    click("Konfirmasi")
    wait.until(lambda d: log_text(d).count("KEY-1-") == 2)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "webchat_purchase.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 0
    assert shop.q("SELECT account_balance FROM users WHERE id = :u", u=uid) == 50000 - 24000
