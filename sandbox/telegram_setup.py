"""Bot API methods of the simulator that set the bot up rather than chat: its identity, update
delivery (getUpdates long-polling or a webhook) and its command lists."""

from __future__ import annotations

import json
import re
import time

from sandbox.telegram_models import DEFAULT_UPDATE_TYPES, JSON, ApiError, bad_request
from sandbox.telegram_params import Params
from sandbox.telegram_state import SimState


class BotSetupMethods:
    """The ``m_<method>`` implementations BotApi dispatches for bot-level Bot API methods."""

    state: SimState

    def m_getMe(self, p: Params) -> JSON:
        """Return the bot user."""
        return dict(self.state.bot_user)

    def m_logOut(self, p: Params) -> bool:
        """Accept logOut."""
        return True

    def m_close(self, p: Params) -> bool:
        """Accept close."""
        return True

    def m_getUpdates(self, p: Params) -> list[JSON]:
        """Return pending updates; offset confirms earlier ones; long-polls up to ``timeout``."""
        st = self.state
        if st.webhook.get("url"):
            raise ApiError(409, "Conflict: can't use getUpdates method while webhook is active; "
                                "use deleteWebhook to delete the webhook first")
        offset = p.get_int("offset") or 0
        limit = p.get_int("limit") or 100
        limit = max(1, min(100, limit))
        timeout = max(0.0, min(50.0, p.get_float("timeout") or 0.0))
        allowed = p.get_json("allowed_updates")
        if isinstance(allowed, list):
            st.allowed_updates = set(allowed) if allowed else set(DEFAULT_UPDATE_TYPES)
        st.poll_generation += 1
        generation = st.poll_generation
        deadline = time.monotonic() + timeout

        def confirm() -> None:
            if offset > 0:
                st.updates = [u for u in st.updates if u["update_id"] >= offset]
            elif offset < 0:
                st.updates = st.updates[offset:]

        while True:
            confirm()
            if st.poll_generation != generation:
                raise ApiError(409, "Conflict: terminated by other getUpdates request; make sure "
                                    "that only one bot instance is running")
            if st.updates:
                return json.loads(json.dumps(st.updates[:limit]))
            remaining = deadline - time.monotonic()
            if remaining <= 0 or st.closing:
                return []
            st.cond.wait(remaining)

    def m_setWebhook(self, p: Params) -> bool:
        """Set a webhook: pending updates are POSTed to it (sandbox.telegram_webhook) and
        getUpdates returns 409. Plain http is accepted, so a bot on loopback is reachable
        without the TLS proxy a real deployment puts in front of it."""
        url = p.get_str("url") or ""
        if url and not re.match(r"https?://", url):
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        self.state.webhook = {
            "url": url,
            "secret_token": p.get_str("secret_token"),
            "max_connections": p.get_int("max_connections") or 40,
            "allowed_updates": p.get_json("allowed_updates"),
            "ip_address": p.get_str("ip_address"),
            "set_at": int(time.time()),
        }
        if url:
            self.state.webhook_active.set()
        else:
            self.state.webhook_active.clear()
        if p.get_bool("drop_pending_updates"):
            self.state.updates = []
        self.state.touch()
        return True

    def m_deleteWebhook(self, p: Params) -> bool:
        """Remove the webhook; ``drop_pending_updates`` clears the queue."""
        self.state.webhook = {"url": ""}
        self.state.webhook_active.clear()
        if p.get_bool("drop_pending_updates"):
            self.state.updates = []
        self.state.touch()
        return True

    def m_getWebhookInfo(self, p: Params) -> JSON:
        """Return WebhookInfo."""
        wh = self.state.webhook
        out: JSON = {
            "url": wh.get("url", ""),
            "has_custom_certificate": False,
            "pending_update_count": len(self.state.updates),
        }
        if wh.get("url"):
            out["max_connections"] = wh.get("max_connections", 40)
            if wh.get("allowed_updates"):
                out["allowed_updates"] = wh["allowed_updates"]
            if wh.get("ip_address"):
                out["ip_address"] = wh["ip_address"]
            if wh.get("last_error_date"):
                out["last_error_date"] = wh["last_error_date"]
                out["last_error_message"] = wh.get("last_error_message", "")
        return out

    @staticmethod
    def _commands_key(p: Params) -> str:
        scope = p.get_json("scope") or {"type": "default"}
        return json.dumps([scope, p.get_str("language_code") or ""], sort_keys=True)

    def m_setMyCommands(self, p: Params) -> bool:
        """Store the command list for a scope / language."""
        commands = p.get_json("commands")
        if not isinstance(commands, list):
            raise bad_request("can't parse commands JSON object")
        for cmd in commands:
            if not isinstance(cmd, dict):
                raise bad_request("can't parse BotCommand")
            name = str(cmd.get("command", ""))
            desc = str(cmd.get("description", ""))
            if not re.fullmatch(r"[a-z0-9_]{1,32}", name):
                raise bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(desc) <= 256:
                raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        self.state.commands[self._commands_key(p)] = [
            {"command": c["command"], "description": c["description"]} for c in commands
        ]
        self.state.touch()
        return True

    def m_getMyCommands(self, p: Params) -> list[JSON]:
        """Return the command list for a scope / language."""
        return list(self.state.commands.get(self._commands_key(p), []))

    def m_deleteMyCommands(self, p: Params) -> bool:
        """Delete the command list for a scope / language."""
        self.state.commands.pop(self._commands_key(p), None)
        self.state.touch()
        return True
