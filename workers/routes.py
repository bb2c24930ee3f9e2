"""Which queue each task runs on (celeryconfig.task_routes is built from this).

One table instead of `queue=` on each task decorator (deprecated in Celery 5, gone in 6): the
queue layout is read in one place, and the compose file's worker groups are checked against it.
"""

from __future__ import annotations

TASK_QUEUES: dict[str, str] = {
    # orders
    "quickcart.cancel_order": "orders",
    "quickcart.create_order": "orders",
    # payments
    "quickcart.cancel_deposit": "payments",
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
    "quickcart.admin_export_stock": "notify",
    "quickcart.admin_private_message": "notify",
    "quickcart.contact_admins": "notify",
    "quickcart.deliver_order": "notify",
    "quickcart.export_user": "notify",
    "quickcart.notify_admins": "notify",
    "quickcart.refresh_bot_commands": "notify",
    "quickcart.release_admin_notices": "notify",
    "quickcart.send_message": "notify",
    "quickcart.send_payment_qr": "notify",
    "quickcart.update_payment_qr": "notify",
    # bulk
    "quickcart.admin_import_stock": "bulk",
    "quickcart.import_stock": "bulk",
    # default
    "quickcart.admin_add_product": "default",
    "quickcart.admin_adjust_balance": "default",
    "quickcart.admin_delete_all_stock": "default",
    "quickcart.admin_delete_product": "default",
    "quickcart.admin_delete_stock": "default",
    "quickcart.admin_edit_product": "default",
    "quickcart.admin_giveaway": "default",
    "quickcart.admin_reseller_price": "default",
    "quickcart.admin_sales_digest": "default",
    "quickcart.admin_set_ban": "default",
    "quickcart.admin_set_role": "default",
    "quickcart.admin_stats": "default",
    "quickcart.admin_transfer": "default",
    "quickcart.admin_user_info": "default",
    "quickcart.erase_user": "default",
    "quickcart.health_monitor": "default",
    "quickcart.purge_outbox": "default",
    "quickcart.redeliver_stuck": "default",
    "quickcart.register_user": "default",
    "quickcart.relay_outbox": "default",
    "quickcart.rollup_sold_counts": "default",
    "quickcart.set_language": "default",
    "quickcart.sync_admins": "default",
    "quickcart.update_profile": "default",
}
