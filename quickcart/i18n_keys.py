"""Catalog keys the code composes at run time, marked so `pybabel extract` finds them.

Nothing imports this module: it exists for extraction. tests/unit/test_translations.py
checks it against the code (every ShopError code and bot command has its keys here).
"""

from __future__ import annotations

from quickcart.i18n import N_, N_plural

# error.<code>: a refused request (quickcart/domain/errors.py ShopError), rendered as
# f"error.{refusal.code}" by the workers and services.
REFUSALS = (
    N_("error.cannot_ban_self"),
    N_("error.deposit_amount_range"),
    N_("error.email_taken"),
    N_("error.env_admin"),
    N_("error.insufficient_balance"),
    N_("error.invalid_amount"),
    N_("error.invalid_email"),
    N_("error.invalid_flag"),
    N_("error.invalid_language"),
    N_("error.invalid_payment_method"),
    N_("error.invalid_price"),
    N_("error.invalid_product_id"),
    N_("error.invalid_quantity"),
    N_("error.invalid_request_id"),
    N_("error.invalid_role"),
    N_("error.invalid_text"),
    N_("error.invalid_upload_id"),
    N_("error.invalid_whatsapp"),
    N_("error.last_admin"),
    N_("error.not_admin"),
    N_("error.not_enough_stock"),
    N_("error.out_of_stock"),
    N_("error.pending_deposit_exists"),
    N_("error.pending_order_exists"),
    N_("error.product_exists"),
    N_("error.product_not_found"),
    N_("error.product_unavailable"),
    N_("error.request_id_reused"),
    N_("error.role_mismatch"),
    N_("error.stock_csv_invalid"),
    N_("error.stock_line_invalid"),
    N_("error.stock_line_too_long"),
    N_("error.stock_not_utf8"),
    N_("error.stock_unit_has_history"),
    N_("error.stock_unit_in_use"),
    N_("error.stock_unit_not_found"),
    N_("error.unknown_field"),
    N_("error.user_banned"),
    N_("error.user_not_found"),
    N_("error.user_not_registered"),
    N_("error.voucher_amount_range"),
    # i18n: {seconds} is a number; pick the form that agrees with it.
    N_plural("error.voucher_cooldown", "seconds"),
    N_("error.voucher_count_range"),
    N_("error.voucher_days_range"),
    N_("error.voucher_expired"),
    N_("error.voucher_unknown"),
    N_("error.voucher_used"),
)

# command.<name>: a command's one-line description in Telegram's command menu and
# /help; usage.<name>: an admin command's syntax with an example (quickcart/bot_commands.py).
COMMANDS = (
    N_("command.start"),
    N_("command.stock"),
    N_("command.help"),
    N_("command.lang"),
    N_("command.export"),
    N_("command.delete_me"),
    N_("command.add"),
    N_("command.del"),
    N_("command.editname"),
    N_("command.editcat"),
    N_("command.editprice"),
    N_("command.editdesc"),
    N_("command.priceress"),
    N_("command.addstock"),
    N_("command.delstock"),
    N_("command.delallstock"),
    N_("command.exportstock"),
    N_("command.info"),
    N_("command.ban"),
    N_("command.unban"),
    N_("command.addreseller"),
    N_("command.rmress"),
    N_("command.addadmin"),
    N_("command.rmadmin"),
    N_("command.editbalance"),
    N_("command.transfer"),
    N_("command.giveaway"),
    N_("command.pm"),
    N_("command.broadcast"),
    N_("command.stats"),
)
USAGES = (
    N_("usage.add"),
    N_("usage.del"),
    N_("usage.editname"),
    N_("usage.editcat"),
    N_("usage.editprice"),
    N_("usage.editdesc"),
    N_("usage.priceress"),
    N_("usage.addstock"),
    N_("usage.delstock"),
    N_("usage.delallstock"),
    N_("usage.exportstock"),
    # i18n: {command} is one of the commands that take a user id.
    N_("usage.user"),
    N_("usage.editbalance"),
    N_("usage.transfer"),
    N_("usage.giveaway"),
    N_("usage.pm"),
    N_("usage.broadcast"),
    N_("usage.stats"),
)

# <kind>.<state>: a QRIS bill's caption and what becomes of it (workers/tasks/notify.py
# renders f"{kind}.awaiting_payment" and f"{kind}.qr_{state}"; quickcart/services/
# payments.py sends f"deposit.{status}").
PAYMENTS = (
    N_("order.awaiting_payment"),
    N_("order.qr_paid"),
    N_("order.qr_expired"),
    N_("order.qr_cancelled"),
    N_("deposit.awaiting_payment"),
    N_("deposit.qr_paid"),
    N_("deposit.qr_expired"),
    N_("deposit.qr_cancelled"),
    N_("deposit.expired"),
    N_("deposit.cancelled"),
)
