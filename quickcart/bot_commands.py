"""The bot's commands as people discover them: Telegram's command menu and /help.

One list for both, so the menu, /help and the admin handlers cannot drift apart: the bot
registers a handler for every ADMIN_COMMANDS name, and every name has a description
(`command.<name>`) and a syntax with an example (`usage.<name>`) in the message catalog.
"""

from __future__ import annotations

from typing import Any

from quickcart.messages import render

#: What a shopper can type (the default scope of the command menu). /menu is /start's alias.
SHOPPER_COMMANDS = ("start", "stock", "help", "lang", "export", "delete_me", "refund")

#: Every admin command, in the order /help lists them (products, stock, users, money, messages).
ADMIN_COMMANDS = (
    "add", "del", "editname", "editcategory", "editprice", "editdesc", "priceress", "editid",
    "disc", "discat", "discfloor", "lowstock",
    "addstock", "liststock", "delstock", "delallstock", "exportstock",
    "info", "ban", "unban", "addreseller", "rmress", "addadmin", "rmadmin",
    "editbalance", "transfer", "voucher", "giveaway",
    "pm", "broadcast", "whitelist", "rm", "stats",
    "order", "reff", "setformula", "version",
    "review", "audit", "fraud",
)

#: Short names that keep working, not listed in the menu or /help: /editcat was the bot's name
#: for the requirements' /editcategory before both were accepted.
ADMIN_ALIASES = {"editcat": "editcategory"}

#: Admin commands whose only argument is a user id: they share one syntax text.
USER_ID_COMMANDS = frozenset({"info", "ban", "unban", "addreseller", "rmress", "addadmin",
                              "rmadmin"})

#: Telegram's limit is 4096 characters per message; /help is split below it.
HELP_CHUNK = 3800


def usage(command: str, language: str) -> str:
    """The syntax of admin command `command` with an example, in `language`."""
    key = "usage.user" if command in USER_ID_COMMANDS else f"usage.{command}"
    return render(key, language, command=command)


def menu(language: str, *, admin: bool) -> list[dict[str, Any]]:
    """The BotCommand list for setMyCommands: shopper commands, plus admin ones for admins."""
    names = SHOPPER_COMMANDS + (ADMIN_COMMANDS if admin else ())
    return [{"command": name, "description": render(f"command.{name}", language)}
            for name in names]


def help_messages(language: str, *, admin: bool) -> list[str]:
    """/help's answer as messages under Telegram's size limit: shopper commands, and for an
    admin every admin command with its syntax and an example."""
    shopper = render("help.shopper_title", language) + "\n" + "\n".join(
        render("help.line", language, command=name,
               description=render(f"command.{name}", language))
        for name in SHOPPER_COMMANDS)
    if not admin:
        return [shopper]
    blocks = [render("help.admin_title", language)]
    blocks += [render("help.line", language, command=name,
                      description=render(f"command.{name}", language))
               + "\n" + usage(name, language) for name in ADMIN_COMMANDS]
    blocks.append(shopper)
    messages: list[str] = []
    current = ""
    for block in blocks:
        if current and len(current) + 2 + len(block) > HELP_CHUNK:
            messages.append(current)
            current = block
        else:
            current = f"{current}\n\n{block}" if current else block
    messages.append(current)
    return messages
