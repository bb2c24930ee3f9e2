"""The Telegram bot: a thin python-telegram-bot front that parses, gates, enqueues and
acknowledges. Run with `python -m bot.app` (long polling)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit

from telegram import Update
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot.gate import gate
from bot.handlers import (
    account,
    admin,
    admin_broadcast,
    admin_catalog,
    admin_orders,
    audit,
    cart,
    catalog,
    menu,
    order,
    restock,
    review,
    support,
)
from bot.handlers.help import help_command
from bot.runtime import BotRuntime
from bot.send_limits import SharedSendLimits
from quickcart import bot_commands
from quickcart.adapters import redis_store
from quickcart.adapters.rate_limit import Limits
from quickcart.config import MissingSettingError, Settings, get_settings
from quickcart.db.engine import get_engine
from quickcart.db.urls import service_urls

log = logging.getLogger("quickcart.bot")

Handler = Callable[[Update, ContextTypes.DEFAULT_TYPE], Coroutine[Any, Any, None]]


def build_application(settings: Settings) -> Application:  # type: ignore[type-arg,unused-ignore]
    """The configured Application (handlers registered; nothing started)."""
    settings.require("bot")
    base = settings.telegram_api_base_url.rstrip("/")
    urls = service_urls()
    redis_client = redis_store.client(urls.redis_url)
    application = (
        ApplicationBuilder()
        .token(settings.telegram_bot_token or "")
        .base_url(f"{base}/bot")
        .base_file_url(f"{base}/file/bot")
        .concurrent_updates(16)
        # The bot's own messages count in the workers' shared send limits (bot/send_limits.py).
        .rate_limiter(SharedSendLimits(redis_client, Limits.from_settings(),
                                       settings.redis_key_prefix))
        .post_init(_apply_admin_ids)
        .build()
    )
    application.bot_data["runtime"] = BotRuntime(
        settings=settings, engine=get_engine(urls.database_url, pool_size=10),
        redis=redis_client)

    # A reply to a ticket in a whitelisted admin group: before the gate (private chats only).
    application.add_handler(MessageHandler(filters.ChatType.GROUPS & filters.REPLY
                                           & ~filters.COMMAND, support.on_group_reply),
                            group=-2)
    application.add_handler(TypeHandler(Update, gate), group=-1)
    application.add_handler(CommandHandler("start", menu.start))
    application.add_handler(CommandHandler(["menu"], menu.start))
    application.add_handler(CommandHandler("stock", catalog.stock_command))
    application.add_handler(CommandHandler("lang", account.lang_command))
    application.add_handler(CommandHandler("export", account.export_command))
    application.add_handler(CommandHandler("delete_me", account.delete_me_command))
    application.add_handler(CommandHandler("help", help_command))
    handlers = admin_command_handlers()
    for name, handler in handlers.items():
        application.add_handler(CommandHandler(name, handler))
    for alias, name in bot_commands.ADMIN_ALIASES.items():
        application.add_handler(CommandHandler(alias, handlers[name]))
    application.add_handler(MessageHandler(filters.COMMAND, menu.unknown_command))
    application.add_handler(MessageHandler(filters.Document.ALL, admin_catalog.on_document))
    application.add_handler(MessageHandler(filters.PHOTO & filters.CaptionRegex(r"^/broadcast"),
                                           admin_broadcast.on_photo))
    application.add_handler(MessageHandler(filters.REPLY & ~filters.COMMAND
                                           & (filters.TEXT | filters.PHOTO), support.on_reply))
    application.add_handler(MessageHandler(filters.PHOTO, support.on_photo))
    application.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, menu.on_text))
    application.add_handler(CallbackQueryHandler(catalog.on_callback, pattern=r"^c:"))
    application.add_handler(CallbackQueryHandler(admin_catalog.on_callback, pattern=r"^ac:"))
    application.add_handler(CallbackQueryHandler(restock.on_callback, pattern=r"^n:"))
    application.add_handler(CallbackQueryHandler(order.on_callback, pattern=r"^o:"))
    application.add_handler(CallbackQueryHandler(cart.on_callback, pattern=r"^k:"))
    application.add_handler(CallbackQueryHandler(order.on_payment_button, pattern=r"^pay:"))
    application.add_handler(CallbackQueryHandler(account.on_callback, pattern=r"^a:"))
    application.add_handler(CallbackQueryHandler(support.on_callback, pattern=r"^sup:"))
    application.add_handler(CallbackQueryHandler(admin_orders.on_callback,
                                                 pattern=r"^(ao|rf):"))
    application.add_handler(CallbackQueryHandler(review.on_callback, pattern=r"^rv:"))
    application.add_handler(CallbackQueryHandler(menu.on_menu_callback))
    application.add_error_handler(menu.on_error)
    return application


def admin_command_handlers() -> dict[str, Handler]:
    """Each admin command (and /refund, shared with shoppers) → the handler of the module that
    parses it: one handler per name, so no module answers a command it does not know."""
    return {**review.COMMANDS, "audit": audit.audit_command, **admin_orders.COMMANDS,
            **{name: admin_catalog.command(name) for name in admin_catalog.COMMANDS},
            "broadcast": admin_broadcast.broadcast_command,
            **{name: admin.command(name) for name in admin.OWN_COMMANDS}}


async def _apply_admin_ids(application: Application) -> None:  # type: ignore[type-arg,unused-ignore]
    """At start: a worker applies this process's ADMIN_IDS (admins promoted and demoted) and
    sets the command menus. Handlers never write the database, so it is a task; a broker that
    is down only delays it (logged), it does not stop the bot."""
    runtime = application.bot_data["runtime"]
    assert isinstance(runtime, BotRuntime)
    try:
        await runtime.enqueue("quickcart.sync_admins",
                              admin_ids=list(runtime.settings.admin_ids))
    except Exception:
        log.warning("could not queue the ADMIN_IDS sync; admins and command menus are applied"
                    " at the next start", exc_info=True)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bot.app",
                                     description="QuickCart Telegram bot (long polling by default)")
    parser.add_argument("--webhook-url", help="public HTTPS URL Telegram posts updates to;"
                        " needs TELEGRAM_WEBHOOK_SECRET")
    parser.add_argument("--listen", default="127.0.0.1", help="webhook listen address")
    parser.add_argument("--port", type=int, default=8443, help="webhook listen port")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Start polling (or a webhook); a missing secret stops with one line and exit code 2."""
    args = _parse_args(argv)
    settings = get_settings()
    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        application = build_application(settings)
        if args.webhook_url and not settings.telegram_webhook_secret:
            raise MissingSettingError("quickcart bot: TELEGRAM_WEBHOOK_SECRET is not set (webhook"
                                      " mode needs it; see .env.example)")
    except MissingSettingError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None
    if args.webhook_url:
        path = urlsplit(args.webhook_url).path.lstrip("/")
        log.info("bot webhook on %s:%s/%s", args.listen, args.port, path)
        application.run_webhook(listen=args.listen, port=args.port, url_path=path,
                                webhook_url=args.webhook_url,
                                secret_token=settings.telegram_webhook_secret,
                                allowed_updates=Update.ALL_TYPES)
        return
    log.info("bot polling %s", settings.telegram_api_base_url)
    application.run_polling(allowed_updates=Update.ALL_TYPES, drop_pending_updates=False)


if __name__ == "__main__":
    main()
