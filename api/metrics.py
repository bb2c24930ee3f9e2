"""Prometheus metrics: request counters here, shop state read from the database on scrape."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, text

registry = CollectorRegistry()
webhooks_total = Counter("quickcart_webhooks_total", "Pakasir notifications by outcome",
                         ["outcome"], registry=registry)


class ShopCollector(Collector):
    """Orders by status, pending deposits, stock left per product, outbox backlog."""

    def __init__(self, engine_factory: Callable[[], Engine]) -> None:
        self._engine = engine_factory

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Read the gauges at scrape time (cheap GROUP BY queries)."""
        engine = self._engine()
        orders = GaugeMetricFamily("quickcart_orders", "Orders by status", labels=["status"])
        stock = GaugeMetricFamily("quickcart_stock_available", "Free units per product",
                                  labels=["product_id"])
        backlog = GaugeMetricFamily("quickcart_outbox_unpublished",
                                    "Side effects committed but not yet published")
        audit = GaugeMetricFamily("quickcart_audit_outbox", "Changes waiting for the audit DB")
        confirmations = GaugeMetricFamily(
            "quickcart_payment_confirmations", "Processed gateway notifications by outcome",
            labels=["outcome"])
        delivery = GaugeMetricFamily(
            "quickcart_delivery_seconds", "Paid → delivered over the last hour",
            labels=["quantile"])
        with engine.connect() as conn:
            for status, count in conn.execute(
                    text("SELECT status, count(*) FROM orders GROUP BY status")):
                orders.add_metric([status], count)
            for product_id, count in conn.execute(text(
                    "SELECT p.id, count(s.id) FROM products p LEFT JOIN product_stocks s"
                    " ON s.product_id = p.id AND NOT s.is_sold AND s.order_id IS NULL"
                    " WHERE p.is_active GROUP BY p.id")):
                stock.add_metric([str(product_id)], count)
            backlog.add_metric([], conn.execute(text(
                "SELECT count(*) FROM outbox WHERE published_at IS NULL")).scalar_one())
            audit.add_metric([], conn.execute(text(
                "SELECT count(*) FROM audit_outbox")).scalar_one())
            for outcome, count in conn.execute(text(
                    "SELECT coalesce(outcome, 'pending'), count(*) FROM payment_events"
                    " GROUP BY 1")):
                confirmations.add_metric([outcome], count)
            row = conn.execute(text(
                "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY d),"
                " percentile_cont(0.99) WITHIN GROUP (ORDER BY d) FROM ("
                " SELECT extract(epoch FROM delivered_at - paid_at) AS d FROM orders"
                " WHERE delivered_at IS NOT NULL AND paid_at > now() - interval '1 hour') x"
            )).one()
            for quantile, value in (("0.5", row[0]), ("0.99", row[1])):
                if value is not None:
                    delivery.add_metric([quantile], float(value))
        yield orders
        yield stock
        yield backlog
        yield audit
        yield confirmations
        yield delivery
