"""SQLAlchemy models of the main database. The DDL (and every rule) lives in migrations/main."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    Numeric,
    String,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import INET, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

Money = Numeric(15, 2, asdecimal=True)
TimestampTZ = DateTime(timezone=True)


class Base(DeclarativeBase):
    """Declarative base of the main database."""


class User(Base):
    """A Telegram user: shopper, reseller or admin."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(255))
    username: Mapped[str | None] = mapped_column(String(255), unique=True)
    email: Mapped[str | None] = mapped_column(String(255), unique=True)
    whatsapp_number: Mapped[str | None] = mapped_column(String(20))
    member_status: Mapped[str] = mapped_column(String(10), server_default="customer")
    bank_id: Mapped[str] = mapped_column(String(10), unique=True)
    account_balance: Mapped[Decimal] = mapped_column(Money, server_default="0")
    is_banned: Mapped[bool] = mapped_column(Boolean, server_default="false")
    language: Mapped[str] = mapped_column(String(5), server_default="id")
    erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(TimestampTZ, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(TimestampTZ, server_default=func.now())


class Product(Base):
    """A catalog entry; `id` is chosen by the admin."""

    __tablename__ = "products"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    category: Mapped[str] = mapped_column(String(255), server_default="Uncategorized")
    customer_price: Mapped[Decimal] = mapped_column(Money)
    reseller_price: Mapped[Decimal | None] = mapped_column(Money)
    sold_count: Mapped[int] = mapped_column(Integer, server_default="0")
    is_active: Mapped[bool] = mapped_column(Boolean, server_default="true")
    created_at: Mapped[datetime] = mapped_column(TimestampTZ, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(TimestampTZ, server_default=func.now())


class ProductStock(Base):
    """One sellable unit (a licence key, an account)."""

    __tablename__ = "product_stocks"
    id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), primary_key=True, server_default=func.gen_random_uuid()
    )
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    content: Mapped[str] = mapped_column(Text)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"))
    is_sold: Mapped[bool] = mapped_column(Boolean, server_default="false")
    created_at: Mapped[datetime] = mapped_column(TimestampTZ, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(TimestampTZ, server_default=func.now())


class Order(Base):
    """A purchase; pending until paid, expired or cancelled."""

    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    invoice_id: Mapped[str] = mapped_column(String(20), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    subtotal: Mapped[Decimal] = mapped_column(Money)
    voucher_discount: Mapped[Decimal] = mapped_column(Money, server_default="0")
    payment_fee: Mapped[Decimal] = mapped_column(Money, server_default="0")
    total_bill: Mapped[Decimal] = mapped_column(Money)
    payment_method: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(10), server_default="pending")
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    fee_estimate: Mapped[Decimal | None] = mapped_column(Money)
    payment_number: Mapped[str | None] = mapped_column(Text)
    amount_paid: Mapped[Decimal | None] = mapped_column(Money)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivery_count: Mapped[int] = mapped_column(Integer, server_default="0")
    delivery_claimed_until: Mapped[datetime | None] = mapped_column(TimestampTZ)
    delivery_claimed_by: Mapped[str | None] = mapped_column(String(64))
    qr_message_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(TimestampTZ, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(TimestampTZ, server_default=func.now())


class OrderItem(Base):
    """One unit in an order, at the price the buyer's role paid."""

    __tablename__ = "order_items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    stock_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("product_stocks.id"), unique=True)
    price_per_unit: Mapped[Decimal] = mapped_column(Money)


class ReleasedOrderItem(Base):
    """An item of an expired or cancelled order, kept for history after its unit was freed."""

    __tablename__ = "released_order_items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"))
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    stock_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("product_stocks.id"))
    price_per_unit: Mapped[Decimal] = mapped_column(Money)
    released_at: Mapped[datetime] = mapped_column(TimestampTZ, server_default=func.now())


class Voucher(Base):
    """A single-use discount code."""

    __tablename__ = "vouchers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(20), unique=True)
    amount: Mapped[Decimal] = mapped_column(Money)
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    is_used: Mapped[bool] = mapped_column(Boolean, server_default="false")
    used_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(TimestampTZ, server_default=func.now())


class VoucherUsageCooldown(Base):
    """A redemption that starts a user's 5-minute voucher cooldown."""

    __tablename__ = "voucher_usage_cooldown"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    last_voucher_used: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Deposit(Base):
    """A QRIS balance top-up."""

    __tablename__ = "deposits"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    invoice_id: Mapped[str] = mapped_column(String(20), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    amount: Mapped[Decimal] = mapped_column(Money)
    payment_fee: Mapped[Decimal] = mapped_column(Money, server_default="0")
    total_bill: Mapped[Decimal] = mapped_column(Money)
    status: Mapped[str] = mapped_column(String(10), server_default="pending")
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    fee_estimate: Mapped[Decimal | None] = mapped_column(Money)
    payment_number: Mapped[str | None] = mapped_column(Text)
    amount_paid: Mapped[Decimal | None] = mapped_column(Money)
    qr_message_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(TimestampTZ, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(TimestampTZ, server_default=func.now())


class BalanceLedger(Base):
    """One balance movement; a user's balance is the sum of theirs."""

    __tablename__ = "balance_ledger"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    amount: Mapped[Decimal] = mapped_column(Money)
    balance_after: Mapped[Decimal] = mapped_column(Money, server_default="0")
    reason: Mapped[str] = mapped_column(String(30))
    reference_type: Mapped[str | None] = mapped_column(String(20))
    reference_id: Mapped[str | None] = mapped_column(String(64))
    actor_id: Mapped[int | None] = mapped_column(BigInteger)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(TimestampTZ, server_default=func.now())


class SoldCountDelta(Base):
    """A sale not yet folded into products.sold_count."""

    __tablename__ = "sold_count_deltas"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    quantity: Mapped[int] = mapped_column(Integer)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"))
    created_at: Mapped[datetime] = mapped_column(TimestampTZ, server_default=func.now())


class IdempotencyKey(Base):
    """A processed intent; claimed in the same transaction as its effect."""

    __tablename__ = "idempotency_keys"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    scope: Mapped[str] = mapped_column(String(50))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(TimestampTZ, server_default=func.now())


class OutboxMessage(Base):
    """A side effect (task to enqueue) committed with the change that caused it."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    topic: Mapped[str] = mapped_column(String(100))
    queue: Mapped[str] = mapped_column(String(30), server_default="default")
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(TimestampTZ, server_default=func.now())
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    leased_until: Mapped[datetime | None] = mapped_column(TimestampTZ)
    correlation_id: Mapped[str | None] = mapped_column(String(64))


class PaymentEvent(Base):
    """A gateway notification as received (inbox); deduplicated by `dedup_key`."""

    __tablename__ = "payment_events"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    provider: Mapped[str] = mapped_column(String(20), server_default="pakasir")
    dedup_key: Mapped[str] = mapped_column(String(200), unique=True)
    invoice_id: Mapped[str] = mapped_column(String(64))
    amount: Mapped[Decimal | None] = mapped_column(Money)
    status: Mapped[str] = mapped_column(String(20))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    source_ip: Mapped[str | None] = mapped_column(INET)
    received_at: Mapped[datetime] = mapped_column(TimestampTZ, server_default=func.now())
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str | None] = mapped_column(String(40))


class AuditOutbox(Base):
    """A captured change waiting to be shipped to the audit database."""

    __tablename__ = "audit_outbox"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor_id: Mapped[int | None] = mapped_column(BigInteger)
    actor_type: Mapped[str] = mapped_column(String(20))
    entity_type: Mapped[str] = mapped_column(String(50))
    entity_id: Mapped[str] = mapped_column(String(50))
    action: Mapped[str] = mapped_column(String(50))
    before_state: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    after_state: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    context: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
