"""Webhook delivery for the Telegram simulator: while a webhook is set, each pending Update is
POSTed to it as Telegram does (JSON body, `X-Telegram-Bot-Api-Secret-Token` when a secret was
given), one at a time and in order, and kept until the bot answers 2xx; a failure is shown in
`getWebhookInfo` (`last_error_date`, `last_error_message`) and retried."""

from __future__ import annotations

import json
import threading
import time

import httpx

from sandbox.telegram_state import JSON, SimState

RETRY_SECONDS = 0.5


class WebhookPusher:
    """A daemon thread pushing the simulator's pending updates to the webhook that is set."""

    def __init__(self, state: SimState, timeout: float = 10.0) -> None:
        self.state = state
        self._client = httpx.Client(timeout=timeout)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="telegram-sim-webhook",
                                        daemon=True)

    def start(self) -> WebhookPusher:
        """Start pushing (idempotent)."""
        if not self._thread.is_alive():
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the POST in flight."""
        self._stopping.set()
        with self.state.cond:
            self.state.cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._client.close()

    def _next(self) -> tuple[str, str | None, JSON] | None:
        """The webhook and the first pending update, waiting for both; None once closing."""
        st = self.state
        while not (st.closing or self._stopping.is_set()):
            # Idle on an event while no webhook is set: waiting on the state's condition
            # would wake this thread on every Bot API call of a polling bot.
            if not st.webhook_active.wait(0.5):
                continue
            with st.cond:
                url = st.webhook.get("url")
                if url and st.updates:
                    update = json.loads(json.dumps(st.updates[0]))
                    return str(url), st.webhook.get("secret_token"), update
                if url:
                    st.cond.wait(0.5)
        return None

    def _run(self) -> None:
        while True:
            job = self._next()
            if job is None:
                return
            url, secret, update = job
            headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret else {}
            try:
                status = self._client.post(url, json=update, headers=headers).status_code
                error = None if 200 <= status < 300 else f"Wrong response: {status}"
            except httpx.HTTPError as exc:
                error = f"Connection failed: {type(exc).__name__}"
            st = self.state
            with st.cond:
                if error is None:
                    # Delivered: gone from the queue (a getUpdates confirmation, as it were).
                    st.updates = [u for u in st.updates if u["update_id"] != update["update_id"]]
                else:
                    st.webhook["last_error_date"] = int(time.time())
                    st.webhook["last_error_message"] = error
                st.touch()
            if error is not None and self._stopping.wait(RETRY_SECONDS):
                return
