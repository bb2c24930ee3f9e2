"""Synchronous Pakasir QRIS gateway client: retries, a circuit breaker and webhook parsing.

Wire format (https://app.pakasir.com/p/docs): JSON bodies carry ``project``, ``order_id``,
``amount`` (whole rupiah, integer) and ``api_key``; the detail endpoint takes the same four as
query parameters. Money is Decimal end to end: responses are decoded with ``parse_int`` and
``parse_float`` set to Decimal so no amount ever passes through a float. The API key is never
logged nor put into an exception message; the detail URL carries it in the query string, so
httpx's own request log line is redacted by a filter installed on the ``httpx`` logger.

``client`` makes the calls, ``breaker`` guards them, ``mapping`` turns responses into values,
``webhook`` checks webhook bodies, ``redaction`` keeps the key out of logs, ``errors`` holds the
exceptions.
"""

from quickcart.adapters.pakasir.breaker import CircuitBreaker
from quickcart.adapters.pakasir.client import PakasirClient
from quickcart.adapters.pakasir.errors import (
    CircuitOpenError,
    GatewayRejectedError,
    GatewayUnavailableError,
    TransactionNotFoundError,
)
from quickcart.adapters.pakasir.mapping import PakasirPayment, PakasirTransaction, parse_timestamp
from quickcart.adapters.pakasir.webhook import WebhookNotification, parse_webhook

__all__ = [
    "CircuitBreaker",
    "CircuitOpenError",
    "GatewayRejectedError",
    "GatewayUnavailableError",
    "PakasirClient",
    "PakasirPayment",
    "PakasirTransaction",
    "TransactionNotFoundError",
    "WebhookNotification",
    "parse_timestamp",
    "parse_webhook",
]
