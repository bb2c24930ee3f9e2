"""Which queue each task runs on (celeryconfig.task_routes is built from this).

One table instead of `queue=` on each task decorator (deprecated in Celery 5, gone in 6): the
queue layout is read in one place, and the compose file's worker groups are checked against it.
"""

from __future__ import annotations

TASK_QUEUES: dict[str, str] = {
    # orders
    "quickcart.cancel_order": "orders",
    "quickcart.create_order": "orders",
    "quickcart.admin_replace_unit": "orders",  # hands out a free unit, locked like a sale
    # payments
    "quickcart.cancel_deposit": "payments",
    "quickcart.admin_recheck_payment": "payments",  # asks the gateway, confirms as a webhook
    "quickcart.cancel_gateway_transaction": "payments",
    "quickcart.confirm_payment": "payments",
    "quickcart.create_deposit": "payments",
    "quickcart.reconcile_payments": "payments",
    "quickcart.start_qris_payment": "payments",
    # expiry
    "quickcart.expire": "expiry",
    "quickcart.expire_due": "expiry",
    "quickcart.expiry_sweep": "expiry",
    "quickcart.schedule_expiry": "expiry",
    # audit
    "quickcart.ship_audit": "audit",
    # notify
    "quickcart.admin_broadcast": "notify",
    "quickcart.broadcast_slice": "notify",
    "quickcart.send_admin_answer": "notify",
    "quickcart.admin_export_stock": "notify",
    "quickcart.admin_private_message": "notify",
    "quickcart.deliver_replacement": "notify",
    "quickcart.deliver_order": "notify",
    "quickcart.export_user": "notify",
    "quickcart.notify_admins": "notify",
    "quickcart.refresh_bot_commands": "notify",
    "quickcart.release_admin_notices": "notify",
    "quickcart.send_bulk_message": "notify",
    "quickcart.send_after_sales_answer": "notify",
    "quickcart.send_message": "notify",
    "quickcart.send_notice": "notify",
    "quickcart.send_payment_qr": "notify",
    "quickcart.support_fan_out": "notify",
    "quickcart.support_relay": "notify",
    "quickcart.update_payment_qr": "notify",
    # bulk
    "quickcart.admin_import_stock": "bulk",
    "quickcart.import_stock": "bulk",
    # default
    "quickcart.admin_audit_query": "default",
    "quickcart.admin_fraud_settings": "default",
    "quickcart.admin_review_decide": "default",
    "quickcart.admin_review_list": "default",
    "quickcart.audit_admin_attempt": "default",
    "quickcart.review_reminders": "default",
    "quickcart.admin_add_product": "default",
    # catalog admin (issue 23)
    "quickcart.admin_add_stock_lines": "default",
    "quickcart.admin_create_voucher": "default",
    "quickcart.admin_discount": "default",
    "quickcart.admin_discount_floor": "default",
    "quickcart.admin_group": "default",
    "quickcart.admin_list_stock": "default",
    "quickcart.admin_low_stock_threshold": "default",
    "quickcart.admin_renumber_product": "default",
    "quickcart.broadcast_resume": "default",
    "quickcart.low_stock_check": "default",
    "quickcart.resend_lost_intents": "default",
    "quickcart.restock_notify": "default",
    "quickcart.restock_watch": "default",
    "quickcart.admin_adjust_balance": "default",
    "quickcart.admin_cancel_refund": "default",
    "quickcart.admin_confirm_refund": "default",
    "quickcart.admin_delete_all_stock": "default",
    "quickcart.admin_delete_product": "default",
    "quickcart.admin_delete_stock": "default",
    "quickcart.admin_edit_product": "default",
    "quickcart.admin_giveaway": "default",
    "quickcart.admin_order_lookup": "default",
    "quickcart.admin_propose_refund": "default",
    "quickcart.admin_resend_delivery": "default",
    "quickcart.admin_reseller_price": "default",
    "quickcart.admin_sales_digest": "default",
    "quickcart.admin_set_ban": "default",
    "quickcart.admin_set_formula": "default",
    "quickcart.admin_set_role": "default",
    "quickcart.admin_stats": "default",
    "quickcart.admin_transfer": "default",
    "quickcart.admin_user_info": "default",
    "quickcart.admin_version": "default",
    "quickcart.admin_warranty_units": "default",
    "quickcart.erase_user": "default",
    "quickcart.health_monitor": "default",
    "quickcart.purge_outbox": "default",
    "quickcart.redeliver_stuck": "default",
    "quickcart.refund_estimate": "default",
    "quickcart.register_user": "default",
    "quickcart.relay_outbox": "default",
    "quickcart.rollup_sold_counts": "default",
    "quickcart.set_language": "default",
    "quickcart.support_admin_answer": "default",
    "quickcart.support_close": "default",
    "quickcart.support_follow_up": "default",
    "quickcart.support_open_ticket": "default",
    "quickcart.sync_admins": "default",
    "quickcart.update_profile": "default",
}

# Message priority on the notify queue, by the class of what the task sends
# (quickcart.adapters.rate_limit.SendClass: 0 paid goods and payment/QR, 3 replies to a
# shopper's action, 6 admin notices, 9 broadcasts and restock notices). kombu keeps one Redis
# list per priority step and a notify worker pops them in this order; the same class waits for
# Telegram's send slots in that order (docs: ADR "Deliveries first"). Unlisted tasks: 3.
NOTIFY_PRIORITIES: dict[str, int] = {
    "quickcart.deliver_order": 0,
    "quickcart.send_payment_qr": 0,
    "quickcart.update_payment_qr": 0,
    "quickcart.send_message": 3,
    "quickcart.notify_admins": 6,
    "quickcart.release_admin_notices": 6,
    "quickcart.send_notice": 6,
    "quickcart.send_bulk_message": 9,
    "quickcart.broadcast_slice": 9,
}
DEFAULT_NOTIFY_PRIORITY = 3


def priority_of(task: str, queue: str) -> int:
    """The message priority of `task` on `queue` (0 is consumed first; only notify has any)."""
    return NOTIFY_PRIORITIES.get(task, DEFAULT_NOTIFY_PRIORITY) if queue == "notify" else 0
