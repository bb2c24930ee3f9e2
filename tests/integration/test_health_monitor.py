"""The beat health monitor tells admins on Telegram when a dependency starts failing, once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from quickcart.adapters.redis_store import prefixed
from sandbox.telegram import TelegramSimulator
from tests.conftest import TestUrls, worker_runtime
from tests.support import free_port
from workers import runtime
from workers.tasks.maintenance import HEALTH_KEY, health_monitor


@pytest.fixture()
def admin_chat(monkeypatch: pytest.MonkeyPatch,
               test_urls: TestUrls) -> Iterator[TelegramSimulator]:
    sim = TelegramSimulator().start()
    sim.add_user("Admin", user_id=4242)
    # this session's own databases: the machine's default database may not exist at all
    with worker_runtime(monkeypatch, test_urls, TELEGRAM_BOT_TOKEN=sim.token,
                        TELEGRAM_API_BASE_URL=sim.base_url, ADMIN_IDS="4242",
                        PAKASIR_BASE_URL=f"http://127.0.0.1:{free_port()}"):  # nobody there
        runtime.redis_client().delete(prefixed(HEALTH_KEY))
        try:
            yield sim
        finally:
            runtime.redis_client().delete(prefixed(HEALTH_KEY))
            sim.stop()


def test_gateway_failure_is_reported_once(admin_chat: TelegramSimulator) -> None:
    first = health_monitor.run()
    assert first == {"database": True, "redis": True, "gateway": False}
    alerts = [c for c in admin_chat.calls(method="sendMessage", chat_id=4242) if c["ok"]]
    assert len(alerts) == 1 and "gateway: DOWN" in alerts[0]["params"]["text"]
    health_monitor.run()  # still down: no news, no message
    assert len([c for c in admin_chat.calls(method="sendMessage", chat_id=4242)
                if c["ok"]]) == 1
