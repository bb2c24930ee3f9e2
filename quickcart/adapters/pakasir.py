"""Synchronous Pakasir QRIS gateway client: retries, a circuit breaker and webhook parsing.

Wire format (https://app.pakasir.com/p/docs): JSON bodies carry ``project``, ``order_id``,
``amount`` (whole rupiah, integer) and ``api_key``; the detail endpoint takes the same four as
query parameters. Money is Decimal end to end: responses are decoded with ``parse_int`` and
``parse_float`` set to Decimal so no amount ever passes through a float. The API key is never
logged nor put into an exception message; the detail URL carries it in the query string, so
httpx's own request log line is redacted by a filter installed on the ``httpx`` logger.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Final, Literal

import httpx

from quickcart.domain.money import MAX_AMOUNT, ZERO

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
    "parse_webhook",
]

logger = logging.getLogger(__name__)

STATUS_PENDING: Final = "pending"
STATUS_COMPLETED: Final = "completed"
STATUS_EXPIRED: Final = "expired"
STATUS_CANCELED: Final = "canceled"
KNOWN_STATUSES: Final = frozenset(
    {STATUS_PENDING, STATUS_COMPLETED, STATUS_EXPIRED, STATUS_CANCELED}
)
_STATUS_ALIASES: Final = {"cancelled": STATUS_CANCELED, "cancel": STATUS_CANCELED}
_MAX_ORDER_ID_LENGTH: Final = 255
_MAX_ERROR_TEXT: Final = 200
_MAX_RETRY_AFTER: Final = 5.0
_TRANSIENT_STATUS: Final = frozenset({429})
_TIMESTAMP = re.compile(
    r"^(?P<base>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2})(?:\.(?P<frac>\d+))?"
    r"(?P<tz>Z|z|[+-]\d{2}:?\d{2})?$"
)
_API_KEY_IN_QUERY = re.compile(r"(api_key=)[^&\s\"']*", re.IGNORECASE)


# --------------------------------------------------------------------------- errors


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


# --------------------------------------------------------------------------- value objects


@dataclass(frozen=True)
class PakasirPayment:
    """A QRIS payment request as created by Pakasir: what the customer must pay, and until when."""

    project: str
    order_id: str
    amount: Decimal
    fee: Decimal
    total_payment: Decimal
    payment_method: str
    payment_number: str
    expired_at: datetime


@dataclass(frozen=True)
class PakasirTransaction:
    """A transaction's state as reported by the transaction detail API."""

    project: str
    order_id: str
    amount: Decimal
    status: str
    payment_method: str | None
    completed_at: datetime | None

    @property
    def is_completed(self) -> bool:
        """True once Pakasir reports the money as received."""
        return self.status == STATUS_COMPLETED


@dataclass(frozen=True)
class WebhookNotification:
    """A validated (but unsigned, hence untrusted) Pakasir webhook body."""

    order_id: str
    amount: Decimal
    project: str
    status: str
    payment_method: str
    completed_at: datetime | None

    @property
    def is_completed(self) -> bool:
        """True when the notification claims the payment completed (verify via the detail API)."""
        return self.status == STATUS_COMPLETED


# --------------------------------------------------------------------------- circuit breaker

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Thread-safe breaker: opens after N consecutive failures, half-opens after a cool-down."""

    def __init__(
        self,
        failure_threshold: int = 5,
        reset_timeout: float = 30.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Configure the threshold, the cool-down in seconds and the injectable monotonic clock."""
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if reset_timeout < 0:
            raise ValueError("reset_timeout must not be negative")
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._state: BreakerState = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False

    @property
    def state(self) -> BreakerState:
        """Current state; an open breaker whose cool-down has elapsed reads as half-open."""
        with self._lock:
            if self._state == "open" and self._cooled_down():
                return "half_open"
            return self._state

    @property
    def consecutive_failures(self) -> int:
        """Failures counted since the last success."""
        with self._lock:
            return self._failures

    def allow_request(self) -> bool:
        """Whether a call may go out now; in half-open state only one trial call at a time."""
        with self._lock:
            if self._state == "closed":
                return True
            if self._state == "open":
                if not self._cooled_down():
                    return False
                self._state = "half_open"
                self._trial_in_flight = False
            if self._trial_in_flight:
                return False
            self._trial_in_flight = True
            return True

    def record_success(self) -> None:
        """A call reached a healthy gateway: close the breaker and reset the count."""
        with self._lock:
            if self._state != "closed":
                logger.info("pakasir circuit closed")
            self._state = "closed"
            self._failures = 0
            self._trial_in_flight = False

    def record_failure(self) -> None:
        """A call failed transiently: count it, and open (or re-open) the breaker if due."""
        with self._lock:
            self._failures += 1
            self._trial_in_flight = False
            if self._state == "half_open" or self._failures >= self.failure_threshold:
                if self._state != "open":
                    logger.warning(
                        "pakasir circuit opened after %d consecutive failures", self._failures
                    )
                self._state = "open"
                self._opened_at = self._clock()

    def release(self) -> None:
        """Give back a half-open trial slot without judging the gateway (e.g. local error)."""
        with self._lock:
            self._trial_in_flight = False

    def _cooled_down(self) -> bool:
        return self._clock() - self._opened_at >= self.reset_timeout


# --------------------------------------------------------------------------- client


class _MalformedResponseError(Exception):
    """The gateway answered 2xx with a body we cannot trust."""


class PakasirClient:
    """Blocking Pakasir API client; safe to share between threads."""

    def __init__(
        self,
        base_url: str,
        project: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.2,
        breaker: CircuitBreaker | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """Bind to one project; `retries` extra attempts, delays `backoff * 2**n` seconds."""
        if not project:
            raise ValueError("project must not be empty")
        if not api_key:
            raise ValueError("api_key must not be empty")
        if retries < 0 or backoff < 0 or timeout <= 0:
            raise ValueError("retries and backoff must be >= 0 and timeout > 0")
        _install_httpx_log_redaction()
        self.project = project
        self._api_key = api_key
        self.retries = retries
        self.backoff = backoff
        self.breaker = breaker if breaker is not None else CircuitBreaker()
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout),
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": "quickcart-pakasir/1"},
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        """Show where the client points, never the key."""
        return f"PakasirClient(base_url={str(self._http.base_url)!r}, project={self.project!r})"

    def __enter__(self) -> PakasirClient:
        """Use as a context manager that closes the connection pool."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close the connection pool."""
        self.close()

    def close(self) -> None:
        """Close the underlying connection pool."""
        self._http.close()

    # ---------------------------------------------------------------- API calls

    def create_qris(self, order_id: str, amount: Decimal) -> PakasirPayment:
        """Create (or fetch the existing pending) QRIS payment for `order_id` and `amount`."""
        body = self._body(order_id, amount)
        data = self._call("create", "POST", "/api/transactioncreate/qris", json_body=body)
        try:
            payment = _parse_payment(data)
        except (ValueError, TypeError, KeyError) as exc:
            raise self._malformed("create", exc) from None
        if payment.order_id != order_id or payment.amount != _whole(amount):
            raise GatewayUnavailableError(
                "pakasir create: response does not echo the requested order_id/amount"
            )
        return payment

    def transaction_detail(self, order_id: str, amount: Decimal) -> PakasirTransaction:
        """Fetch the authoritative status of a transaction (use it to verify webhooks)."""
        params = {k: str(v) for k, v in self._body(order_id, amount).items()}
        data = self._call("detail", "GET", "/api/transactiondetail", params=params)
        try:
            tx = _parse_transaction(data)
        except (ValueError, TypeError, KeyError) as exc:
            raise self._malformed("detail", exc) from None
        if tx.order_id != order_id or tx.amount != _whole(amount):
            raise GatewayUnavailableError(
                "pakasir detail: response does not echo the requested order_id/amount"
            )
        return tx

    def cancel(self, order_id: str, amount: Decimal) -> None:
        """Cancel a pending transaction; 4xx (e.g. already paid) raises GatewayRejectedError."""
        body = self._body(order_id, amount)
        self._call("cancel", "POST", "/api/transactioncancel", json_body=body)

    def simulate_payment(self, order_id: str, amount: Decimal) -> None:
        """Sandbox projects only: pretend the customer paid, which triggers the webhook."""
        body = self._body(order_id, amount)
        self._call("simulate", "POST", "/api/paymentsimulation", json_body=body)

    # ---------------------------------------------------------------- plumbing

    def _body(self, order_id: str, amount: Decimal) -> dict[str, str | int]:
        _check_order_id(order_id)
        whole = _whole(amount)
        if whole <= ZERO:
            raise ValueError("amount must be positive")
        return {
            "project": self.project,
            "order_id": order_id,
            "amount": int(whole),
            "api_key": self._api_key,
        }

    def _call(
        self,
        op: str,
        method: str,
        path: str,
        *,
        json_body: Mapping[str, object] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        """Send one logical request with retries; return the decoded JSON body of a 2xx."""
        if not self.breaker.allow_request():
            raise CircuitOpenError(f"pakasir {op}: circuit open, not calling the gateway")
        judged = False
        try:
            result = self._attempts(op, method, path, json_body=json_body, params=params)
            judged = True
            return result
        except (GatewayUnavailableError, GatewayRejectedError):
            judged = True
            raise
        finally:
            if not judged:  # programming error or unexpected exception: free a half-open slot
                self.breaker.release()

    def _attempts(
        self,
        op: str,
        method: str,
        path: str,
        *,
        json_body: Mapping[str, object] | None,
        params: Mapping[str, str] | None,
    ) -> Any:
        attempts = self.retries + 1
        last_problem = "no attempt made"
        for attempt in range(attempts):
            retry_after: float | None = None
            try:
                response = self._http.request(method, path, json=json_body, params=params)
            except httpx.TransportError as exc:  # connect/read/write/pool timeouts, resets
                last_problem = f"{type(exc).__name__}: {self._redact(str(exc)) or 'no detail'}"
            else:
                status = response.status_code
                if 200 <= status < 300:
                    try:
                        data = _decode_json(response)
                    except _MalformedResponseError as exc:
                        self.breaker.record_failure()
                        raise self._malformed(op, exc) from None
                    self.breaker.record_success()
                    return data
                if status >= 500 or status in _TRANSIENT_STATUS:
                    last_problem = f"HTTP {status}"
                    retry_after = _retry_after(response)
                else:
                    # The gateway is alive and answered deliberately: not a breaker failure.
                    self.breaker.record_success()
                    raise self._rejected(op, response)
            if attempt + 1 < attempts:
                delay = self.backoff * (2**attempt)
                if retry_after is not None:
                    delay = max(delay, min(retry_after, _MAX_RETRY_AFTER))
                logger.warning(
                    "pakasir %s %s attempt %d/%d failed (%s); retrying in %.2fs",
                    op,
                    path,
                    attempt + 1,
                    attempts,
                    last_problem,
                    delay,
                )
                time.sleep(delay)
        self.breaker.record_failure()
        logger.error(
            "pakasir %s %s failed after %d attempts (%s)", op, path, attempts, last_problem
        )
        raise GatewayUnavailableError(
            f"pakasir {op}: gateway unavailable after {attempts} attempts ({last_problem})"
        )

    def _rejected(self, op: str, response: httpx.Response) -> GatewayRejectedError:
        detail = self._redact(_error_text(response))
        message = f"pakasir {op}: rejected with HTTP {response.status_code}: {detail}"
        logger.warning("%s", message)
        if response.status_code == 404:
            return TransactionNotFoundError(message, status_code=404)
        return GatewayRejectedError(message, status_code=response.status_code)

    def _malformed(self, op: str, exc: Exception) -> GatewayUnavailableError:
        message = f"pakasir {op}: malformed response: {self._redact(str(exc))}"
        logger.error("%s", message)
        return GatewayUnavailableError(message)

    def _redact(self, text: str) -> str:
        text = _API_KEY_IN_QUERY.sub(r"\1***", text)
        return text.replace(self._api_key, "***") if self._api_key else text


def _decode_json(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content, parse_float=Decimal, parse_int=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _MalformedResponseError(f"body is not JSON (HTTP {response.status_code})") from exc


def _error_text(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        for key in ("error", "message", "detail"):
            value = data.get(key)
            if isinstance(value, str) and value:
                return value[:_MAX_ERROR_TEXT]
    text = response.text.strip().replace("\n", " ")
    return text[:_MAX_ERROR_TEXT] or response.reason_phrase


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


# --------------------------------------------------------------------------- parsing


def _whole(amount: Decimal) -> Decimal:
    """Validate a caller-supplied amount as whole rupiah."""
    if not isinstance(amount, Decimal | int) or isinstance(amount, bool):
        raise TypeError("amount must be a Decimal (whole rupiah)")
    value = Decimal(amount)
    if not value.is_finite() or value != value.to_integral_value():
        raise ValueError("amount must be whole rupiah")
    if value < ZERO or value > MAX_AMOUNT:
        raise ValueError("amount out of range")
    return value.quantize(Decimal("1"))


def _check_order_id(order_id: object) -> str:
    if not isinstance(order_id, str):
        raise TypeError("order_id must be a string")
    if not order_id or order_id != order_id.strip():
        raise ValueError("order_id must be non-empty without surrounding whitespace")
    if len(order_id) > _MAX_ORDER_ID_LENGTH:
        raise ValueError("order_id too long")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in order_id):
        raise ValueError("order_id contains control characters")
    return order_id


def _gateway_amount(value: object, field: str) -> Decimal:
    """An amount from a gateway response: int/Decimal (or a digit string), whole, in range."""
    if isinstance(value, bool | float):
        raise ValueError(f"{field} must not be a float or bool")
    if isinstance(value, str):
        if not value.isdigit():
            raise ValueError(f"{field} is not a whole number")
        value = Decimal(value)
    if not isinstance(value, Decimal | int):
        raise ValueError(f"{field} must be a number")
    try:
        return _whole(Decimal(value))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{field}: {exc}") from None


def _require_str(data: Mapping[str, object], field: str, *, allow_empty: bool = False) -> str:
    if field not in data:
        raise ValueError(f"missing field {field!r}")
    value = data[field]
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise ValueError(f"{field} must not be empty")
    return value


def _normalise_status(value: str) -> str:
    status = value.strip().lower()
    return _STATUS_ALIASES.get(status, status)


def parse_timestamp(value: str) -> datetime:
    """Parse an RFC 3339 timestamp (any fraction length, Z or offset) into an aware datetime."""
    match = _TIMESTAMP.match(value.strip())
    if not match:
        raise ValueError(f"not an RFC 3339 timestamp: {value[:40]!r}")
    tz = match["tz"]
    if tz is None:
        raise ValueError(f"timestamp lacks a UTC offset: {value[:40]!r}")
    frac = (match["frac"] or "")[:6].ljust(6, "0")
    offset = "+00:00" if tz in ("Z", "z") else (tz if ":" in tz else f"{tz[:3]}:{tz[3:]}")
    return datetime.fromisoformat(f"{match['base'].replace(' ', 'T')}.{frac}{offset}")


def _optional_timestamp(data: Mapping[str, object], field: str) -> datetime | None:
    value = data.get(field)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a string timestamp or null")
    return parse_timestamp(value)


def _parse_payment(data: object) -> PakasirPayment:
    if not isinstance(data, dict) or not isinstance(data.get("payment"), dict):
        raise ValueError("expected an object with a 'payment' object")
    p: dict[str, object] = data["payment"]
    amount = _gateway_amount(p.get("amount"), "amount")
    fee = _gateway_amount(p.get("fee"), "fee")
    total = _gateway_amount(p.get("total_payment"), "total_payment")
    if total < amount:
        raise ValueError("total_payment is below amount")
    expired_at = _optional_timestamp(p, "expired_at")
    if expired_at is None:
        raise ValueError("missing expired_at")
    return PakasirPayment(
        project=_require_str(p, "project"),
        order_id=_require_str(p, "order_id"),
        amount=amount,
        fee=fee,
        total_payment=total,
        payment_method=_require_str(p, "payment_method"),
        payment_number=_require_str(p, "payment_number"),
        expired_at=expired_at,
    )


def _parse_transaction(data: object) -> PakasirTransaction:
    if not isinstance(data, dict) or not isinstance(data.get("transaction"), dict):
        raise ValueError("expected an object with a 'transaction' object")
    t: dict[str, object] = data["transaction"]
    method = t.get("payment_method")
    if method is not None and not isinstance(method, str):
        raise ValueError("payment_method must be a string or null")
    status = _normalise_status(_require_str(t, "status"))
    if status not in KNOWN_STATUSES:
        logger.warning("pakasir detail: unknown transaction status %r", status)
    return PakasirTransaction(
        project=_require_str(t, "project"),
        order_id=_require_str(t, "order_id"),
        amount=_gateway_amount(t.get("amount"), "amount"),
        status=status,
        payment_method=method or None,
        completed_at=_optional_timestamp(t, "completed_at"),
    )


_WEBHOOK_FIELDS: Final = ("amount", "order_id", "project", "status", "payment_method")


def parse_webhook(body: Mapping[str, object]) -> WebhookNotification:
    """Validate a webhook body strictly; raises ValueError naming the offending field."""
    if not isinstance(body, Mapping):
        raise ValueError("webhook body must be a JSON object")
    missing = [name for name in (*_WEBHOOK_FIELDS, "completed_at") if name not in body]
    if missing:
        raise ValueError(f"webhook body is missing field(s): {', '.join(missing)}")
    raw_amount = body["amount"]
    if isinstance(raw_amount, bool) or not isinstance(raw_amount, int | Decimal):
        raise ValueError(
            f"webhook amount must be an integer number of rupiah, got {type(raw_amount).__name__}"
        )
    amount = Decimal(raw_amount)
    if not amount.is_finite() or amount != amount.to_integral_value():
        raise ValueError("webhook amount must be whole rupiah")
    if amount <= ZERO or amount > MAX_AMOUNT:
        raise ValueError("webhook amount must be positive and within range")
    try:
        order_id = _check_order_id(body["order_id"])
    except TypeError:
        raise ValueError("webhook order_id must be a string") from None
    except ValueError as exc:
        raise ValueError(f"webhook order_id invalid: {exc}") from None
    project = _require_str(body, "project")
    status = _normalise_status(_require_str(body, "status"))
    payment_method = _require_str(body, "payment_method")
    try:
        completed_at = _optional_timestamp(body, "completed_at")
    except ValueError as exc:
        raise ValueError(f"webhook completed_at invalid: {exc}") from None
    if status == STATUS_COMPLETED and completed_at is None:
        raise ValueError("webhook completed_at is required when status is completed")
    return WebhookNotification(
        order_id=order_id,
        amount=amount.quantize(Decimal("1")),
        project=project,
        status=status,
        payment_method=payment_method,
        completed_at=completed_at,
    )


# --------------------------------------------------------------------------- log redaction


class _RedactApiKeyFilter(logging.Filter):
    """Scrub ``api_key=...`` from log records (httpx logs full request URLs at INFO)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message and arguments in place; never drops a record."""
        if isinstance(record.msg, str) and "api_key" in record.msg.lower():
            record.msg = _API_KEY_IN_QUERY.sub(r"\1***", record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_scrub(arg) for arg in record.args)
        elif isinstance(record.args, Mapping):
            record.args = {key: _scrub(value) for key, value in record.args.items()}
        return True


def _scrub(value: object) -> object:
    text = str(value)
    return _API_KEY_IN_QUERY.sub(r"\1***", text) if "api_key" in text.lower() else value


_redaction_lock = threading.Lock()
_redaction_installed = False


def _install_httpx_log_redaction() -> None:
    global _redaction_installed
    with _redaction_lock:
        if _redaction_installed:
            return
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).addFilter(_RedactApiKeyFilter())
        _redaction_installed = True
