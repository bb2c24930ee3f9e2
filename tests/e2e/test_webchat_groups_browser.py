"""The web chat page's group chats in headless Chromium, with the bot and workers running: the
admin whitelists a staff group, a shopper's ticket shows there, and the admin answers it from the
page as a member of the group (`/#chat=<group id>&user=<id>`, the reply arrow, the member picker);
a group created on the page is listed and opened."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Shop
from tests.e2e.test_admin_group import open_ticket
from tests.e2e.test_bot import (
    bot,  # noqa: F401 - the bot process fixture
    last_id,
    make_admin,
    said,
)
from tests.e2e.test_bot_catalog_admin import ask
from tests.e2e.test_webchat_browser import (  # noqa: F401 - the browser fixture
    GUIDE_IMAGES,
    VIEWPORT,
    Page,
    browser,
    png_size,
)

pytestmark = pytest.mark.slow

GROUP = -1001234567890


def test_a_ticket_answered_from_a_group_in_the_web_chat(shop: Shop, bot: Any,  # noqa: F811
                                                         browser: Any) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    admin = make_admin(shop, 9501)
    staff = shop.add_user(9502)
    shopper = shop.add_user(5501)
    shop.telegram.add_group("Staf QuickCart", [admin, staff], chat_id=GROUP)
    ask(shop, admin, "whitelist", str(GROUP), "menerima notifikasi")
    ticket = open_ticket(shop, shopper, "Kunci saya tidak bisa dipakai")
    copy = said(shop, GROUP, f"Tiket #{ticket}")

    page = Page(browser)
    browser.get(f"{shop.telegram.base_url}/#chat={GROUP}&user={admin}")
    page.until(lambda: "Staf QuickCart" in page.text("groups"), "the group in the sidebar")
    page.until(lambda: f"chat id {GROUP}" in page.text("status"), "the group's chat")
    assert page.text("title") == "Staf QuickCart"
    page.until(lambda: f"Tiket #{ticket}" in page.text("log"), "the ticket's copy")
    picker = Select(browser.find_element(By.ID, "as"))
    assert picker.first_selected_option.get_attribute("value") == str(admin)
    assert [o.get_attribute("value") for o in picker.options] == [str(admin), str(staff)]

    # the reply arrow of the ticket's copy, then the answer: the shopper gets it
    after = last_id(shop, shopper)
    page.click(f"//div[@id='log']/div[contains(., 'Tiket #{ticket}')]"
               "//a[@class='reply-to']", "the copy's reply arrow")
    page.until(lambda: f"Replying to #{copy['message_id']}" in page.text("replying"),
               "the reply bar")
    page.send("Sudah kami ganti, coba lagi ya.")
    said(shop, shopper, "Sudah kami ganti", after)
    page.until(lambda: "Jawaban terkirim" in page.text("log"), "the answer's receipt")
    assert page.text("replying") == ""
    sent = [m for m in shop.telegram.transcript(GROUP)["messages"] if not m["from_bot"]]
    assert [(m["sender"]["id"], m["reply_to_message_id"]) for m in sent] == [
        (admin, copy["message_id"])]

    # the member picker: the staff member writes next (shown on the right, the admin's left)
    picker.select_by_value(str(staff))
    page.until(lambda: browser.current_url.endswith(f"#chat={GROUP}&user={staff}"),
               "the staff member's view")
    page.send("siapa yang jaga hari ini?")
    page.until(lambda: "siapa yang jaga" in page.text("log"), "the staff member's message")
    mine = browser.find_elements(By.XPATH, "//div[@id='log']/div[contains(@class, 'msg user')]")
    assert [e.text.splitlines()[0] for e in mine] == ["siapa yang jaga hari ini?"]
    assert browser.find_element(By.XPATH, "//div[@id='log']/div[contains(., 'Sudah kami')]"
                                ).text.startswith("Pembeli 9501")  # the admin, by name
    # The owner guide's picture of answering a ticket in a staff group (section 6.6).
    shot = browser.get_screenshot_as_png()
    assert png_size(shot) == VIEWPORT
    GUIDE_IMAGES.mkdir(parents=True, exist_ok=True)
    (GUIDE_IMAGES / "webchat-group-ticket.png").write_bytes(shot)

    # a group made on the page is listed and opened; a user's own chat is one click away
    browser.find_element(By.XPATH, "//details[@id='newgroup-box']/summary").click()
    browser.find_element(By.ID, "ng-title").send_keys("Grup baru")
    browser.find_element(By.ID, "ng-members").send_keys(f"{staff}, {shopper}")
    browser.find_element(By.ID, "newgroup").submit()
    page.until(lambda: page.text("title") == "Grup baru", "the new group")
    made = [g for g in shop.telegram.groups() if g["title"] == "Grup baru"]
    assert [g["member_ids"] for g in made] == [[staff, shopper]]
    assert browser.current_url.endswith(f"#chat={made[0]['id']}&user={staff}")
    page.click(f"//div[@id='users']/div[contains(., 'id {shopper}')]", "the shopper")
    page.until(lambda: f"chat id {shopper}" in page.text("status"), "the shopper's chat")
    assert "Sudah kami ganti" in page.text("log") and page.text("error") == ""
