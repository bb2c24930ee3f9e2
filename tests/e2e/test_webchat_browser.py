"""The simulator's web chat page in headless Chromium (Selenium), with the bot and workers
running for real: a shopper buys (screenshot under tests/artifacts/); the users the shop knows
are listed and picked, `/#user=<id>` opens a chat or offers to create an unknown user, and the
screenshots of the shop owner's guide (docs/images/webchat-*.png) are taken."""

from __future__ import annotations

import shutil
import struct
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from quickcart.services.registration import register_user
from tests.e2e.conftest import Shop
from tests.e2e.test_bot import bot  # noqa: F401 - the bot process fixture
from tests.support import ROOT

pytestmark = pytest.mark.slow

ARTIFACTS = ROOT / "tests" / "artifacts"
GUIDE_IMAGES = ROOT / "docs" / "images"
VIEWPORT = (1200, 800)  # the guide's screenshots: readable, and small enough to keep in git
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
                 "--window-size={},{}".format(*VIEWPORT)):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        # The window size includes the browser's own bars: fix the page's size exactly instead.
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": VIEWPORT[0], "height": VIEWPORT[1], "deviceScaleFactor": 1,
            "mobile": False})
        yield driver
    finally:
        driver.quit()


def test_buy_through_the_web_chat(shop: Shop, bot: Any, browser: Any) -> None:  # noqa: F811
    shop.add_product(1, price=12000, units=2)
    uid = shop.add_user(7001, balance=50000)
    page = Page(browser)

    browser.get(f"{shop.telegram.base_url}/#user={uid}")
    page.until(lambda: "7001" in page.text("status"), "the shopper's chat")
    page.send("/start")
    page.until(lambda: "Selamat datang" in page.text("log"), "the welcome")
    page.button("Semua Produk")
    page.until(lambda: "Produk 1" in page.text("log"), "the product list")
    page.button("1. Produk 1")
    page.button("Beli")
    page.button("+", exact=True)
    page.until(lambda: "Jumlah: 2" in page.text("log"), "the quantity 2")
    page.button("Lanjut ke pembayaran")
    page.until(lambda: "Ringkasan pesanan" in page.text("log"), "the summary")
    page.button("SALDO")
    page.until(lambda: page.text("log").count("KEY-1-") == 2, "the two delivered keys")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "webchat_purchase.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 0
    assert shop.q("SELECT account_balance FROM users WHERE id = :u", u=uid) == 50000 - 24000


class Page:
    """The web chat page as a person uses it: waits on what is shown, clicks through re-renders."""

    def __init__(self, browser: Any, timeout: float = 40) -> None:
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.support.ui import WebDriverWait

        self.browser = browser
        self.wait = WebDriverWait(browser, timeout, poll_frequency=0.2,
                                  ignored_exceptions=(StaleElementReferenceException,))

    def text(self, element_id: str) -> str:
        """The visible text of an element (empty when it is absent)."""
        from selenium.webdriver.common.by import By

        found = self.browser.find_elements(By.ID, element_id)
        return str(found[0].text) if found else ""

    def until(self, check: Callable[[], Any], what: str) -> Any:
        """Wait until `check()` is truthy; the failure says what was awaited and what is shown."""
        from selenium.common.exceptions import TimeoutException

        try:
            return self.wait.until(lambda _d: check())
        except TimeoutException:
            raise AssertionError(f"page never showed {what}; title {self.text('title')!r}, "
                                 f"status {self.text('status')!r}, log {self.text('log')!r}, "
                                 f"error {self.text('error')!r}") from None

    def click(self, xpath: str, what: str) -> None:
        """Click the last element matching `xpath` (the page re-renders: retried)."""
        from selenium.webdriver.common.by import By

        def press() -> bool:
            found = self.browser.find_elements(By.XPATH, xpath)
            if found:
                found[-1].click()
            return bool(found)
        self.until(press, what)

    def button(self, label: str, exact: bool = False) -> None:
        """Press the newest inline button whose label contains (or is) `label`."""
        test = f"normalize-space(.)='{label}'" if exact else \
            f"contains(normalize-space(.), '{label}')"
        self.click(f"//div[@id='log']//button[{test}]", f"a button {label!r}")

    def send(self, text: str) -> None:
        """Type `text` in the composer and send it."""
        from selenium.webdriver.common.by import By

        self.browser.find_element(By.ID, "text").send_keys(text)
        self.browser.find_element(By.ID, "composer").submit()


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def test_known_users_urls_and_guide_screenshots(shop: Shop, bot: Any,  # noqa: F811
                                                browser: Any) -> None:
    """Users the shop knows (the launcher's `--user`) are listed and picked before they ever
    wrote; `/#user=<id>` opens that chat; an unknown id offers to create the user, a malformed
    one says so in one line. On the way, the shop owner's guide gets its screenshots: written
    only once every step here has passed."""
    from selenium.webdriver.common.by import By

    shop.add_product(1, price=35000, units=5)
    with shop.main.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE products SET name = 'Netflix Premium 1 Bulan', category = 'Streaming',"
            " description = 'Akun sharing 1 profil, 30 hari.' WHERE id = 1")
    admin, shopper = 900001, 900002
    register_user(shop.main, admin, "Admin Demo", "admin_demo")
    register_user(shop.main, shopper, "Budi Demo", "budi_demo")
    with shop.main.begin() as conn:
        conn.exec_driver_sql(f"UPDATE users SET member_status = 'admin' WHERE id = {admin}")
    base = shop.telegram.base_url
    known = httpx.post(f"{base}/sandbox/known-users", timeout=10, json={
        "users": [f"{admin}:Admin Demo:admin_demo", f"{shopper}:Budi Demo:budi_demo"]})
    assert known.status_code == 200, known.text
    page = Page(browser)
    shots: dict[str, bytes] = {}
    try:
        # Listed in the sidebar before they wrote a word, and picked from it.
        browser.get(f"{base}/")
        page.until(lambda: "Admin Demo" in page.text("users")
                   and "Budi Demo" in page.text("users"), "the known users in the sidebar")
        assert "No users yet" not in page.text("users")
        page.click("//div[@id='users']/div[contains(., 'Budi Demo')]", "Budi in the sidebar")
        page.until(lambda: f"chat id {shopper}" in page.text("status"), "Budi's chat")
        assert browser.current_url.endswith(f"/#user={shopper}")

        # A shopper's /start, and a product with its buttons.
        page.send("/start")
        page.until(lambda: "Selamat datang" in page.text("log"), "the welcome")
        page.until(lambda: browser.find_element(By.ID, "replykbd").is_displayed(),
                   "the menu keyboard")  # the last part of the answer: a stable screenshot
        shots["webchat-start.png"] = browser.get_screenshot_as_png()
        page.button("Semua Produk")
        page.until(lambda: "Netflix Premium" in page.text("log"), "the product list")
        page.button("1. Netflix")
        page.until(lambda: browser.find_elements(
            By.XPATH, "//div[@id='log']//button[contains(., 'Beli')]"), "the product's Beli")
        assert "Rp35.000" in page.text("log")
        shots["webchat-product.png"] = browser.get_screenshot_as_png()

        # /#user=<id> opens that chat on a fresh page load; the admin asks for /help.
        browser.get("about:blank")
        browser.get(f"{base}/#user={admin}")
        page.until(lambda: f"chat id {admin}" in page.text("status"), "the admin's chat")
        assert page.text("title").startswith("Admin Demo")
        page.send("/help")
        page.until(lambda: "/addstock" in page.text("log"), "the admin commands in /help")
        # Show the question and the start of the answer, not the shopper part at the end.
        browser.execute_script(
            "const mine = document.querySelectorAll('#log .msg.user');"
            "mine[mine.length - 1].scrollIntoView({block: 'start'});")
        shots["webchat-admin-help.png"] = browser.get_screenshot_as_png()

        # An unknown id offers to create that user; creating opens the chat.
        unknown = 123457
        browser.get(f"{base}/#user={unknown}")
        page.until(lambda: browser.find_elements(By.ID, "offer-create"), "the create offer")
        assert f"no user with id {unknown}" in page.text("log")
        assert browser.find_element(By.ID, "offer-id").get_attribute("value") == str(unknown)
        assert page.text("error") == ""
        page.click("//button[@id='offer-create']", "the create button")
        page.until(lambda: f"chat id {unknown}" in page.text("status"), "the new user's chat")
        assert unknown in [u["id"] for u in shop.telegram.users()]

        # A malformed id: one line saying what is wrong, no chat, no raw error.
        browser.get(f"{base}/#user=abc")
        page.until(lambda: browser.find_elements(By.ID, "bad-id"), "the malformed-id line")
        assert page.text("bad-id").count("\n") == 0
        assert "is not a user id" in page.text("bad-id")
        assert page.text("error") == "" and page.text("status") == ""
        assert len(shop.telegram.users()) == 3
    finally:
        shop.telegram.reset(keep_known_users=False)

    GUIDE_IMAGES.mkdir(parents=True, exist_ok=True)
    for name, data in shots.items():
        assert png_size(data) == VIEWPORT, name
        (GUIDE_IMAGES / name).write_bytes(data)


def test_cart_and_summary_in_the_web_chat(shop: Shop, bot: Any, browser: Any) -> None:  # noqa: F811
    """Issue 21: two products into the cart, a quantity changed there, the summary's exact
    bill, paid by SALDO; every unit delivered."""
    shop.add_product(41, price=10000, units=3)
    shop.add_product(42, price=25000, units=3)
    uid = shop.add_user(7041, balance=100000)
    page = Page(browser)
    browser.get(f"{shop.telegram.base_url}/#user={uid}")
    page.until(lambda: str(uid) in page.text("status"), "the shopper's chat")
    for product_id in (41, 42):
        page.send(str(product_id))
        page.until(lambda p=product_id: f"Produk {p}" in page.text("log"), "the product")
        page.button("Tambah ke keranjang")
        page.until(lambda p=product_id: f"Produk {p} × 1" in page.text("log"), "the cart")
    page.button("➕")  # the newest ➕: the cart's last line, Produk 42 × 1 → 2
    page.until(lambda: "Produk 42 × 2" in page.text("log"), "a quantity changed in the cart")
    page.button("Checkout")
    page.until(lambda: "Ringkasan pesanan" in page.text("log"), "the summary")
    log = page.text("log")
    assert "Total tagihan" in log and "sisa setelah bayar" in log
    page.button("SALDO")
    page.until(lambda: "KEY-42-" in page.text("log") and "KEY-41-" in page.text("log"),
               "the delivered keys")
    paid = shop.q("SELECT total_bill FROM orders WHERE user_id = :u AND status = 'paid'", u=uid)
    assert paid == 10000 + 2 * 25000
    assert shop.q("SELECT account_balance FROM users WHERE id = :u", u=uid) == 100000 - paid


def test_admin_broadcast_in_the_web_chat(shop: Shop, bot: Any, browser: Any) -> None:  # noqa: F811
    """Issue 23 as an admin sees it: /broadcast typed in the page, one status message that
    turns from "⏳ Diproses…" into the report; every shopper gets the promo once."""
    from tests.e2e.test_bot import make_admin

    admin = make_admin(shop, 7090)
    shoppers = [shop.add_user(7091 + i) for i in range(3)]
    page = Page(browser)
    browser.get(f"{shop.telegram.base_url}/#user={admin}")
    page.until(lambda: str(admin) in page.text("status"), "the admin's chat")
    page.send("/broadcast Promo akhir pekan: diskon 20%!")
    page.until(lambda: "Siaran selesai" in page.text("log"), "the broadcast's report")
    log = page.text("log")
    assert "4 terkirim, 0 gagal, 0 memblokir bot" in log  # 3 shoppers and the admin
    assert "Diproses" not in log and log.count("Siaran") == 1  # one message, edited
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "webchat_broadcast.png"))
    for uid in shoppers:
        texts = [str(m.get("text")) for m in shop.telegram.bot_messages(uid)]
        assert sum("Promo akhir pekan" in t for t in texts) == 1
