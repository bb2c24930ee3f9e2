"""Local Telegram Bot API simulator: real wire format, control API, web chat and test handle.

Point a bot at it by changing only the base URLs, e.g. with python-telegram-bot::

    ApplicationBuilder().token(sim.token)
        .base_url(f"{sim.base_url}/bot").base_file_url(f"{sim.base_url}/file/bot")

Control/test API lives under ``/sandbox/...``; the web chat page is served at ``/``
(``/#user=ID`` opens a chat, ``/#chat=GROUP&user=ID`` a group as one of its members). Users the
shop already knows are given with ``--user ID:NAME`` (``users=`` here, ``POST
/sandbox/known-users`` on a running one) so the page lists them.

Group chats (``add_group``, ``POST /sandbox/groups``) have negative ids (supergroups -100…) and
simulated users as members; a member acts there by passing ``chat_id`` to the same methods that
act in their private chat. The bot is in every group, in privacy mode as Telegram's default: it
gets commands, mentions of it and replies to its own messages, not the rest of the talk.
"""

from __future__ import annotations

import argparse
import socket
import threading
import time
from collections.abc import Callable, Iterable

import uvicorn

from sandbox.serving import listening_socket
from sandbox.telegram_app import DEFAULT_TOKEN, create_app
from sandbox.telegram_control import wait_bot_message
from sandbox.telegram_models import KnownUser
from sandbox.telegram_state import JSON, SimState
from sandbox.telegram_webhook import WebhookPusher

__all__ = ["DEFAULT_TOKEN", "KnownUser", "TelegramSimulator", "create_app", "serve"]


# ---------------------------------------------------------------------- test handle
class TelegramSimulator:
    """In-process simulator handle: runs uvicorn in a background thread on a loopback port."""

    def __init__(self, token: str = DEFAULT_TOKEN, host: str = "127.0.0.1", port: int = 0,
                 bot_username: str = "quickcart_sandbox_bot",
                 users: Iterable[KnownUser | str] = ()) -> None:
        """``users``: users the shop knows (``KnownUser`` or ``"ID:NAME[:USERNAME]"``), listed in
        the web chat from the start and kept across reset; like ``--user`` on the command line."""
        self.token = token
        self.host = host
        self._port = port
        self.state = SimState(token, bot_username=bot_username, users=known_users(users))
        self.app = create_app(token, self.state)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._pusher: WebhookPusher | None = None

    # ------------------------------------------------------------ lifecycle
    @property
    def port(self) -> int:
        """Return the bound TCP port (after start())."""
        return self._port

    @property
    def base_url(self) -> str:
        """Return the server root, e.g. http://127.0.0.1:40123."""
        return f"http://{self.host}:{self._port}"

    @property
    def bot_base_url(self) -> str:
        """Return the value for PTB's ``base_url`` (token is appended by PTB)."""
        return f"{self.base_url}/bot"

    @property
    def file_base_url(self) -> str:
        """Return the value for PTB's ``base_file_url``."""
        return f"{self.base_url}/file/bot"

    def api_url(self, method: str, token: str | None = None) -> str:
        """Return the full Bot API URL of a method."""
        return f"{self.base_url}/bot{token or self.token}/{method}"

    def start(self, timeout: float = 10.0) -> TelegramSimulator:
        """Start uvicorn in a daemon thread and wait until it accepts connections."""
        if self._thread is not None:
            return self
        sock = listening_socket(self.host, self._port)
        self._port = sock.getsockname()[1]
        self._sock = sock
        self.state.closing = False
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off",
                                timeout_graceful_shutdown=3, access_log=False)
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                                        name=f"telegram-sim-{self._port}", daemon=True)
        self._thread.start()
        self._pusher = WebhookPusher(self.state).start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("Telegram simulator failed to start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Wake long-polls, stop uvicorn and join its thread."""
        self.state.close()
        if self._pusher is not None:
            self._pusher.stop()
            self._pusher = None
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None

    def __enter__(self) -> TelegramSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ injection helpers
    def add_user(self, first_name: str = "Alice", user_id: int | None = None,
                 username: str | None = None, language_code: str | None = "en",
                 last_name: str | None = None, opened: bool = True) -> JSON:
        """Create a simulated user (private chat id == user id); return the User object.

        ``opened=False``: the bot gets "chat not found" for them until they write to it."""
        return self.state.add_user(first_name, user_id, username, language_code, last_name,
                                   opened)

    def users(self) -> list[JSON]:
        """Return all simulated users."""
        return self.state.list_users()

    def add_group(self, title: str, member_ids: Iterable[int], chat_id: int | None = None,
                  chat_type: str | None = None) -> JSON:
        """Create (or replace) a group chat the bot is in; return {id, type, title,
        member_ids}. ``chat_id``: negative (default a new supergroup, -100…)."""
        return self.state.add_group(title, member_ids, chat_id, chat_type)

    def groups(self) -> list[JSON]:
        """Return all group chats."""
        return self.state.list_groups()

    # Each user action below is in the user's private chat, or with ``chat_id`` in a group
    # they are a member of.
    def send_text(self, user_id: int, text: str, reply_to_message_id: int | None = None,
                  chat_id: int | None = None) -> JSON:
        """Inject a text message (a reply-keyboard press is just this); return the Message."""
        return self.state.send_text(user_id, text, reply_to_message_id, chat_id)["message"]

    def send_command(self, user_id: int, command: str, args: str = "",
                     chat_id: int | None = None) -> JSON:
        """Inject ``/command args`` with a bot_command entity; return the Message."""
        text = f"/{command.lstrip('/')} {args}".strip()
        return self.send_text(user_id, text, chat_id=chat_id)

    def send_document(self, user_id: int, data: bytes, filename: str,
                      mime_type: str | None = None, caption: str | None = None,
                      chat_id: int | None = None) -> JSON:
        """Inject a document upload; return the Message (document.file_id works with getFile)."""
        return self.state.send_upload(user_id, "document", data, filename, mime_type,
                                      caption, chat_id)["message"]

    def send_photo(self, user_id: int, data: bytes, filename: str = "photo.png",
                   caption: str | None = None, chat_id: int | None = None) -> JSON:
        """Inject a photo upload; return the Message."""
        return self.state.send_upload(user_id, "photo", data, filename, None,
                                      caption, chat_id)["message"]

    def edit_text(self, user_id: int, message_id: int, text: str,
                  chat_id: int | None = None) -> JSON:
        """Inject an edit of the user's own text message (edited_message update)."""
        return self.state.edit_user_text(user_id, message_id, text, chat_id)["message"]

    def press_button(self, user_id: int, message_id: int, callback_data: str,
                     chat_id: int | None = None) -> str:
        """Press an inline button of a bot message; return the callback_query id."""
        pressed = self.state.press_button(user_id, message_id, callback_data, chat_id)
        return str(pressed["callback_query_id"])

    def block(self, user_id: int, blocked: bool = True) -> None:
        """Make the user block the bot (sends fail with 403) or unblock it."""
        self.state.set_blocked(user_id, blocked)

    def set_rate_limit(self, enabled: bool = True, per_chat_per_second: int = 1,
                       global_per_second: int = 30, per_group_per_minute: int = 20) -> None:
        """Enable/disable Telegram-like flood limits (429 with retry_after)."""
        self.state.set_rate_limit(enabled, per_chat_per_second, global_per_second,
                                  per_group_per_minute)

    def reset(self, keep_known_users: bool = True) -> None:
        """Forget everything except the token and the known users (update ids keep increasing);
        ``keep_known_users=False`` forgets those too."""
        self.state.reset(keep_known_users)

    # ------------------------------------------------------------ inspection helpers
    def calls(self, method: str | None = None, chat_id: int | None = None,
              since: int = 0) -> list[JSON]:
        """Return recorded Bot API calls (seq, time, method, params, files, ok, error)."""
        return self.state.list_calls(method, chat_id, since)

    def last_call_seq(self) -> int:
        """Return the seq of the most recent call (use as ``since`` later)."""
        return self.state.last_call_seq()

    def transcript(self, chat_id: int) -> JSON:
        """Return the chat transcript (current content; edits and deletions applied)."""
        return self.state.transcript(chat_id)

    def bot_messages(self, chat_id: int) -> list[JSON]:
        """Return the live bot messages of a chat."""
        return self.state.bot_messages(chat_id)

    def pending_updates(self) -> list[JSON]:
        """Return updates the bot has not confirmed yet."""
        return self.state.pending_updates()

    def file_bytes(self, file_id: str) -> bytes:
        """Return the content of a stored file."""
        with self.state.cond:
            return self.state.files[file_id].data

    def wait_for_bot_message(self, chat_id: int,
                             predicate: Callable[[JSON], bool] | None = None,
                             timeout: float = 10.0, after_message_id: int = 0) -> JSON:
        """Wait until a bot message in the chat matches ``predicate``; raise TimeoutError."""
        check = predicate or (lambda _m: True)
        found = wait_bot_message(self.state, chat_id, check, timeout, after_message_id)
        if found is None:
            texts = [(m["message_id"], m["text"] or m["caption"])
                     for m in self.state.bot_messages(chat_id)]
            raise TimeoutError(f"no matching bot message in chat {chat_id} after {timeout}s; "
                               f"bot messages: {texts}")
        return found

    def wait_for_call(self, method: str, predicate: Callable[[JSON], bool] | None = None,
                      timeout: float = 10.0, since: int = 0) -> JSON:
        """Wait until a recorded call of ``method`` (seq > since) matches; raise TimeoutError."""
        check = predicate or (lambda _c: True)

        def probe() -> JSON | None:
            return next((c for c in self.state.list_calls(method, since=since) if check(c)),
                        None)

        found: JSON | None = self.state.wait_until(probe, timeout)
        if found is None:
            raise TimeoutError(f"no matching {method} call after {timeout}s")
        return found

    def wait_until_consumed(self, timeout: float = 10.0) -> None:
        """Wait until the bot has confirmed (getUpdates offset) every queued update."""
        if not self.state.wait_until(lambda: not self.state.updates, timeout):
            raise TimeoutError(f"{len(self.state.updates)} updates still pending")


def known_users(users: Iterable[KnownUser | str]) -> list[KnownUser]:
    """Return ``users`` as KnownUser, parsing ``"ID:NAME[:USERNAME]"`` strings (ValueError)."""
    return [u if isinstance(u, KnownUser) else KnownUser.parse(u) for u in users]


def serve(host: str = "127.0.0.1", port: int = 8081, token: str = DEFAULT_TOKEN,
          users: Iterable[KnownUser | str] = ()) -> None:
    """Run the simulator in the foreground (blocking) until interrupted."""
    print(f"Telegram sandbox: web chat http://{host}:{port}/  "
          f"Bot API http://{host}:{port}/bot<token>/<method>  token {token}", flush=True)
    state = SimState(token, users=known_users(users))
    pusher = WebhookPusher(state).start()
    try:
        # No access log: the bot's long poll would write a line every 10 s of an idle shop.
        uvicorn.run(create_app(token, state), host=host, port=port, log_level="info",
                    access_log=False)
    finally:
        pusher.stop()


def _user_arg(spec: str) -> KnownUser:
    try:
        return KnownUser.parse(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    """The command line of `python -m sandbox.telegram`."""
    parser = argparse.ArgumentParser(prog="python -m sandbox.telegram",
                                     description="Local Telegram Bot API simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    parser.add_argument("--user", action="append", default=[], type=_user_arg,
                        metavar="ID:NAME[:USERNAME]",
                        help="a user the shop already knows, listed in the web chat (repeatable),"
                             " e.g. --user '900002:Budi Demo:budi_demo'")
    return parser


def main(argv: list[str] | None = None) -> None:
    """`python -m sandbox.telegram [--host H] [--port P] [--token T] [--user ID:NAME ...]`."""
    args = build_parser().parse_args(argv)
    serve(host=args.host, port=args.port, token=args.token, users=args.user)


if __name__ == "__main__":
    main()
