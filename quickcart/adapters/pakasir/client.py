"""The Pakasir API client: one project's calls with retries, backoff and the circuit breaker.

Network errors, timeouts, 5xx and 429 are retried with exponential backoff (Retry-After is
honoured up to a ceiling) and count against the breaker; a 4xx is a deliberate answer, raised at
once as GatewayRejectedError; a 2xx whose body cannot be trusted raises GatewayUnavailableError.
Every number in a response is decoded as Decimal. The API key never reaches a log line or an
exception message.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final, TypeVar

import httpx

from quickcart.adapters.pakasir.breaker import CircuitBreaker
from quickcart.adapters.pakasir.errors import (
    CircuitOpenError,
    GatewayRejectedError,
    GatewayUnavailableError,
    TransactionNotFoundError,
)
from quickcart.adapters.pakasir.mapping import (
    PakasirPayment,
    PakasirTransaction,
    check_order_id,
    parse_payment,
    parse_transaction,
    whole_rupiah,
)
from quickcart.adapters.pakasir.redaction import install_httpx_log_redaction, redact_query
from quickcart.domain.money import ZERO

logger = logging.getLogger(__name__)

_MAX_ERROR_TEXT: Final = 200
_MAX_RETRY_AFTER: Final = 5.0
_TRANSIENT_STATUS: Final = frozenset({429})
# What create and detail return: both echo the order_id and amount they were asked about.
_Echo = TypeVar("_Echo", PakasirPayment, PakasirTransaction)


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
        install_httpx_log_redaction()
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
        return self._echoing("create", parse_payment, data, order_id, amount)

    def transaction_detail(self, order_id: str, amount: Decimal) -> PakasirTransaction:
        """Fetch the authoritative status of a transaction (use it to verify webhooks)."""
        params = {k: str(v) for k, v in self._body(order_id, amount).items()}
        data = self._call("detail", "GET", "/api/transactiondetail", params=params)
        return self._echoing("detail", parse_transaction, data, order_id, amount)

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
        check_order_id(order_id)
        whole = whole_rupiah(amount)
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

    def _echoing(
        self, op: str, parse: Callable[[object], _Echo], data: Any, order_id: str, amount: Decimal
    ) -> _Echo:
        """Parse a 2xx body, insisting it is about the order_id and amount that were asked for."""
        try:
            parsed = parse(data)
        except (ValueError, TypeError, KeyError) as exc:
            raise self._malformed(op, exc) from None
        if parsed.order_id != order_id or parsed.amount != whole_rupiah(amount):
            raise GatewayUnavailableError(
                f"pakasir {op}: response does not echo the requested order_id/amount"
            )
        return parsed

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
        text = redact_query(text)
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
