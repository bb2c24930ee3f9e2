"""The Pakasir client's exceptions: transient (retry later) versus rejected (never retried)."""

from __future__ import annotations


class GatewayUnavailableError(Exception):
    """Pakasir could not be reached or kept failing (network, timeout, 5xx/429, circuit open)."""


class CircuitOpenError(GatewayUnavailableError):
    """The circuit breaker is open: the call failed fast without touching the network."""


class GatewayRejectedError(Exception):
    """Pakasir answered 4xx: a permanent refusal (bad key, bad project, conflict); never retried."""

    def __init__(self, message: str, *, status_code: int) -> None:
        """Keep the HTTP status next to the (already redacted) message."""
        super().__init__(message)
        self.status_code = status_code


class TransactionNotFoundError(GatewayRejectedError):
    """Pakasir has no transaction for that project, order_id and amount (HTTP 404)."""
