"""Names and queues of the side effects services put in the outbox (the workers' task names)."""

from __future__ import annotations

DELIVER_ORDER = ("quickcart.deliver_order", "notify")
SEND_MESSAGE = ("quickcart.send_message", "notify")  # a reply to the shopper's own action
SEND_NOTICE = ("quickcart.send_notice", "notify")  # one admin's copy of a notice
# Broadcasts and restock notices: the lowest class in Telegram's send pipe (payload as
# SEND_MESSAGE: chat_id, key, params, optional once_key).
SEND_BULK_MESSAGE = ("quickcart.send_bulk_message", "notify")
SEND_PAYMENT_QR = ("quickcart.send_payment_qr", "notify")
UPDATE_PAYMENT_QR = ("quickcart.update_payment_qr", "notify")
NOTIFY_ADMINS = ("quickcart.notify_admins", "notify")
START_QRIS = ("quickcart.start_qris_payment", "payments")
CANCEL_GATEWAY = ("quickcart.cancel_gateway_transaction", "payments")
CONFIRM_PAYMENT = ("quickcart.confirm_payment", "payments")
SCHEDULE_EXPIRY = ("quickcart.schedule_expiry", "expiry")
