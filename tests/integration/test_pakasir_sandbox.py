"""The Pakasir client against the real sandbox (uvicorn on a free port) and a webhook sink."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import uvicorn

from quickcart.adapters.pakasir import (
    CircuitBreaker,
    CircuitOpenError,
    GatewayRejectedError,
    GatewayUnavailableError,
    PakasirClient,
    TransactionNotFoundError,
    parse_webhook,
)
from quickcart.domain.money import qris_fee
from sandbox.pakasir import crc16_ccitt, create_app, parse_tlv
from sandbox.serving import listening_socket

PROJECT = "qc-test"
API_KEY = "sk-test-5f0c1d2e3a4b"  # a recognisable secret: it must never leak
WAIT = 10.0  # generous ceiling for conditions; tests normally finish in milliseconds

pytestmark = pytest.mark.timeout(120)


# --------------------------------------------------------------------------- fixtures


class WebhookSink:
    """A tiny HTTP server recording every POSTed JSON body."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []
        self.cond = threading.Condition()
        self.status = 200
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                with sink.cond:
                    sink.bodies.append(json.loads(raw))
                    sink.cond.notify_all()
                    status = sink.status
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/pakasir"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, count: int, timeout: float = WAIT) -> list[Any]:
        """Block until at least `count` bodies arrived; fail on timeout."""
        with self.cond:
            ok = self.cond.wait_for(lambda: len(self.bodies) >= count, timeout=timeout)
            assert ok, f"expected {count} webhook(s), got {len(self.bodies)}"
            return list(self.bodies)

    def clear(self) -> None:
        with self.cond:
            self.bodies.clear()
            self.status = 200

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Sandbox:
    """The sandbox app served by uvicorn in a background thread."""

    def __init__(self, webhook_url: str) -> None:
        self.app = create_app(PROJECT, API_KEY, webhook_url=webhook_url, expiry_minutes=10)
        self.sock = listening_socket()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )
        self.thread.start()
        wait_until(lambda: self.server.started, what="sandbox start")
        self.control = httpx.Client(base_url=self.url, timeout=5.0)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self.control.post(path, json=body or {})
        assert response.status_code < 400, response.text
        return response.json()

    def get(self, path: str) -> Any:
        response = self.control.get(path)
        assert response.status_code == 200, response.text
        return response.json()

    def api_requests(self) -> int:
        return int(self.get("/sandbox/stats")["requests"].get("total", 0))

    def wait_webhooks_settled(self) -> dict[str, Any]:
        """Wait until the sandbox has no webhook delivery in flight."""
        result: dict[str, Any] = {}

        def settled() -> bool:
            result.update(self.get("/sandbox/webhooks"))
            return result["in_flight"] == 0

        wait_until(settled, what="webhook deliveries to settle")
        return result

    def stop(self) -> None:
        self.control.close()
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def wait_until(predicate: Callable[[], bool], *, what: str, timeout: float = WAIT) -> None:
    """Poll `predicate` until true (short poll interval), failing after `timeout`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


class CountingTransport(httpx.BaseTransport):
    """Wraps a real transport and counts the requests that actually went out."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.count = 0
        self.lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.count += 1
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def sink() -> Iterator[WebhookSink]:
    server = WebhookSink()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sandbox_server(sink: WebhookSink) -> Iterator[Sandbox]:
    server = Sandbox(sink.url)
    yield server
    server.stop()


@pytest.fixture
def sandbox(sandbox_server: Sandbox, sink: WebhookSink) -> Iterator[Sandbox]:
    sandbox_server.post("/sandbox/reset")
    sink.clear()
    yield sandbox_server
    sandbox_server.wait_webhooks_settled()  # no stray delivery leaks into the next test


@pytest.fixture
def transport() -> CountingTransport:
    return CountingTransport()


@pytest.fixture
def make_client(
    sandbox: Sandbox, transport: CountingTransport
) -> Iterator[Callable[..., PakasirClient]]:
    clients: list[PakasirClient] = []

    def make(**kwargs: Any) -> PakasirClient:
        options: dict[str, Any] = {"timeout": 5.0, "retries": 2, "backoff": 0.01}
        options.update(kwargs)
        options.setdefault("transport", transport)
        project = options.pop("project", PROJECT)
        api_key = options.pop("api_key", API_KEY)
        client = PakasirClient(sandbox.url, project, api_key, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., PakasirClient]) -> PakasirClient:
    return make_client()


# --------------------------------------------------------------------------- happy path


def test_create_then_detail_is_pending_with_documented_fee(client: PakasirClient) -> None:
    before = datetime.now(UTC)
    payment = client.create_qris("ORD-1001", Decimal("25000"))

    assert payment.project == PROJECT
    assert payment.order_id == "ORD-1001"
    assert payment.amount == Decimal("25000")
    assert payment.fee == qris_fee(Decimal("25000")) == Decimal("485")
    assert payment.total_payment == Decimal("25485")
    assert all(isinstance(v, Decimal) for v in (payment.amount, payment.fee, payment.total_payment))
    assert payment.payment_method == "qris"
    assert payment.expired_at.tzinfo is not None
    assert before + timedelta(minutes=9) < payment.expired_at <= before + timedelta(minutes=11)

    tlv = parse_tlv(payment.payment_number)
    assert tlv["00"] == "01" and tlv["01"] == "12" and tlv["53"] == "360"
    assert Decimal(tlv["54"]) == payment.total_payment
    assert payment.payment_number[-8:-4] == "6304"
    assert f"{crc16_ccitt(payment.payment_number[:-4].encode()):04X}" == tlv["63"]

    tx = client.transaction_detail("ORD-1001", Decimal("25000"))
    assert tx.status == "pending"
    assert not tx.is_completed
    assert tx.amount == Decimal("25000")
    assert tx.completed_at is None


def test_qris_crc_matches_the_example_in_pakasir_docs() -> None:
    example = (
        "00020101021226610016ID.CO.SHOPEE.WWW01189360091800216005230208216005230303UME51440014"
        "ID.CO.QRIS.WWW0215ID10243228429300303UME5204792953033605409100003.005802ID5907Pakasir"
        "6012KAB. KEBUMEN61055439262230519SP25RZRATEQI2HQ65Q46304A079"
    )
    assert f"{crc16_ccitt(example[:-4].encode()):04X}" == "A079"


def test_create_is_idempotent_for_same_order_and_amount(
    client: PakasirClient, sandbox: Sandbox
) -> None:
    first = client.create_qris("ORD-IDEM", Decimal("10000"))
    second = client.create_qris("ORD-IDEM", Decimal("10000"))
    assert second == first
    assert len(sandbox.get("/sandbox/transactions")["transactions"]) == 1

    with pytest.raises(GatewayRejectedError) as excinfo:
        client.create_qris("ORD-IDEM", Decimal("12000"))
    assert excinfo.value.status_code == 409


def test_simulated_payment_completes_and_sends_exactly_one_webhook(
    client: PakasirClient, sandbox: Sandbox, sink: WebhookSink
) -> None:
    client.create_qris("ORD-PAY", Decimal("50000"))
    client.simulate_payment("ORD-PAY", Decimal("50000"))

    bodies = sink.wait_for(1)
    log = sandbox.wait_webhooks_settled()
    assert len(sink.bodies) == 1
    assert [d["outcome"] for d in log["deliveries"]] == ["delivered"]
    note = parse_webhook(bodies[0])
    assert note.order_id == "ORD-PAY"
    assert note.amount == Decimal("50000")
    assert note.project == PROJECT
    assert note.is_completed
    assert note.payment_method == "qris"
    assert note.completed_at is not None and note.completed_at.utcoffset() == timedelta(hours=7)

    tx = client.transaction_detail("ORD-PAY", Decimal("50000"))
    assert tx.is_completed
    assert tx.completed_at == note.completed_at

    client.simulate_payment("ORD-PAY", Decimal("50000"))  # paying twice sends nothing new
    sandbox.wait_webhooks_settled()
    assert len(sink.bodies) == 1


def test_duplicated_webhook_arrives_three_times(
    client: PakasirClient, sandbox: Sandbox, sink: WebhookSink
) -> None:
    sandbox.post("/sandbox/faults/webhook/duplicate", {"copies": 3})
    client.create_qris("ORD-DUP", Decimal("15000"))
    client.simulate_payment("ORD-DUP", Decimal("15000"))

    bodies = sink.wait_for(3)
    sandbox.wait_webhooks_settled()
    assert len(sink.bodies) == 3
    assert all(body == bodies[0] for body in bodies)
    assert {parse_webhook(body).order_id for body in bodies} == {"ORD-DUP"}


def test_delayed_webhook_arrives_later(
    client: PakasirClient, sandbox: Sandbox, sink: WebhookSink
) -> None:
    sandbox.post("/sandbox/faults/webhook/delay", {"seconds": 0.3})
    client.create_qris("ORD-LATE", Decimal("15000"))
    started = time.monotonic()
    client.simulate_payment("ORD-LATE", Decimal("15000"))
    assert client.transaction_detail("ORD-LATE", Decimal("15000")).is_completed
    sink.wait_for(1)
    assert time.monotonic() - started >= 0.3


def test_dropped_webhook_never_arrives_but_detail_is_completed(
    client: PakasirClient, sandbox: Sandbox, sink: WebhookSink
) -> None:
    sandbox.post("/sandbox/faults/webhook/drop")
    client.create_qris("ORD-DROP", Decimal("20000"))
    client.simulate_payment("ORD-DROP", Decimal("20000"))

    log = sandbox.wait_webhooks_settled()
    assert [d["outcome"] for d in log["deliveries"]] == ["dropped"]
    assert sink.bodies == []
    assert client.transaction_detail("ORD-DROP", Decimal("20000")).is_completed


def test_mark_paid_without_webhook(
    client: PakasirClient, sandbox: Sandbox, sink: WebhookSink
) -> None:
    client.create_qris("ORD-LOST", Decimal("30000"))
    summary = sandbox.post("/sandbox/transactions/ORD-LOST/mark-paid")
    assert summary["status"] == "completed"
    log = sandbox.wait_webhooks_settled()
    assert log["deliveries"] == [] and sink.bodies == []
    assert client.transaction_detail("ORD-LOST", Decimal("30000")).is_completed


def test_pay_button_on_html_page_sends_webhook(
    client: PakasirClient, sandbox: Sandbox, sink: WebhookSink
) -> None:
    client.create_qris("ORD-<HTML>", Decimal("12345"))
    page = sandbox.control.get("/")
    assert page.status_code == 200
    assert "ORD-&lt;HTML&gt;" in page.text and "Bayar" in page.text
    assert "Rp12.345" in page.text and "Rp12.742" in page.text  # amount and total

    response = sandbox.control.post("/sandbox/transactions/ORD-<HTML>/pay")
    assert response.status_code == 303
    assert parse_webhook(sink.wait_for(1)[0]).order_id == "ORD-<HTML>"
    assert "Bayar" not in sandbox.control.get("/").text


def test_forged_webhook_is_delivered_verbatim(sandbox: Sandbox, sink: WebhookSink) -> None:
    forged = {"order_id": "ORD-FAKE", "amount": 1.5, "status": "completed"}
    record = sandbox.post("/sandbox/webhooks/forge", {"body": forged})
    assert record["outcome"] == "delivered" and record["status_code"] == 200
    assert sink.wait_for(1) == [forged]
    with pytest.raises(ValueError):
        parse_webhook(forged)


def test_cancel_and_expiry(client: PakasirClient, sandbox: Sandbox) -> None:
    client.create_qris("ORD-CANCEL", Decimal("8000"))
    client.cancel("ORD-CANCEL", Decimal("8000"))
    assert client.transaction_detail("ORD-CANCEL", Decimal("8000")).status == "canceled"
    with pytest.raises(GatewayRejectedError) as excinfo:
        client.simulate_payment("ORD-CANCEL", Decimal("8000"))
    assert excinfo.value.status_code == 409

    client.create_qris("ORD-EXP", Decimal("9000"))
    sandbox.post("/sandbox/clock/advance", {"seconds": 11 * 60})
    assert client.transaction_detail("ORD-EXP", Decimal("9000")).status == "expired"

    client.create_qris("ORD-PAID", Decimal("9000"))
    client.simulate_payment("ORD-PAID", Decimal("9000"))
    with pytest.raises(GatewayRejectedError) as excinfo:
        client.cancel("ORD-PAID", Decimal("9000"))
    assert excinfo.value.status_code == 409


def test_unknown_order_is_not_found(client: PakasirClient, transport: CountingTransport) -> None:
    with pytest.raises(TransactionNotFoundError):
        client.transaction_detail("ORD-NOPE", Decimal("1000"))
    assert transport.count == 1
    client.create_qris("ORD-AMT", Decimal("1000"))
    with pytest.raises(TransactionNotFoundError):
        client.transaction_detail("ORD-AMT", Decimal("1001"))


# --------------------------------------------------------------------------- failures


def test_wrong_api_key_is_rejected_without_retry_and_without_leaking(
    make_client: Callable[..., PakasirClient],
    sandbox: Sandbox,
    transport: CountingTransport,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong_key = "sk-wrong-9d8c7b6a"
    bad = make_client(api_key=wrong_key, retries=3)
    with pytest.raises(GatewayRejectedError) as excinfo:
        bad.create_qris("ORD-AUTH", Decimal("10000"))
    assert excinfo.value.status_code == 401
    assert transport.count == 1
    assert sandbox.api_requests() == 1
    with pytest.raises(GatewayRejectedError) as excinfo2:
        bad.transaction_detail("ORD-AUTH", Decimal("10000"))  # key travels in the query string
    assert transport.count == 2
    assert bad.breaker.state == "closed"  # a 4xx means the gateway is up

    for exc in (excinfo.value, excinfo2.value):
        assert wrong_key not in str(exc) and wrong_key not in repr(exc)
    assert wrong_key not in caplog.text
    assert wrong_key not in repr(bad)


def test_wrong_project_is_rejected(make_client: Callable[..., PakasirClient]) -> None:
    with pytest.raises(GatewayRejectedError) as excinfo:
        make_client(project="someone-else").create_qris("ORD-PRJ", Decimal("10000"))
    assert excinfo.value.status_code == 400


def test_api_key_never_logged_on_success(
    client: PakasirClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client.create_qris("ORD-LOG", Decimal("10000"))
    client.transaction_detail("ORD-LOG", Decimal("10000"))
    assert "transactiondetail" in caplog.text  # httpx did log the request line...
    assert API_KEY not in caplog.text  # ...with the key redacted


@pytest.mark.parametrize("status", [502, 503, 429])
def test_transient_status_is_retried_then_succeeds(
    client: PakasirClient, sandbox: Sandbox, transport: CountingTransport, status: int
) -> None:
    sandbox.post("/sandbox/faults/api", {"fail_next": 2, "status": status})
    payment = client.create_qris("ORD-FLAKY", Decimal("10000"))
    assert payment.order_id == "ORD-FLAKY"
    assert transport.count == 3
    assert client.breaker.consecutive_failures == 0


def test_timeout_is_unavailable(
    make_client: Callable[..., PakasirClient], sandbox: Sandbox
) -> None:
    sandbox.post("/sandbox/faults/api", {"latency_seconds": 1.0})
    slow = make_client(timeout=0.2, retries=1)
    with pytest.raises(GatewayUnavailableError, match="ReadTimeout"):
        slow.transaction_detail("ORD-SLOW", Decimal("1000"))


def test_connection_refused_is_unavailable(make_client: Callable[..., PakasirClient]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    dead = PakasirClient(f"http://127.0.0.1:{dead_port}", PROJECT, API_KEY, retries=1, backoff=0)
    with dead, pytest.raises(GatewayUnavailableError, match="ConnectError") as excinfo:
        dead.create_qris("ORD-DEAD", Decimal("1000"))
    assert API_KEY not in str(excinfo.value)


def test_gateway_down_exhausts_retries_then_breaker_fails_fast(
    make_client: Callable[..., PakasirClient], sandbox: Sandbox, transport: CountingTransport
) -> None:
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout=30.0)
    down_client = make_client(breaker=breaker, retries=2)
    sandbox.post("/sandbox/down")

    for expected_requests in (3, 6):  # 1 attempt + 2 retries per call
        with pytest.raises(GatewayUnavailableError, match="HTTP 503"):
            down_client.create_qris("ORD-DOWN", Decimal("10000"))
        assert transport.count == expected_requests
    assert breaker.state == "open"

    with pytest.raises(CircuitOpenError):
        down_client.transaction_detail("ORD-DOWN", Decimal("10000"))
    assert transport.count == 6  # failed fast: nothing went out
    assert sandbox.api_requests() == 6


def test_breaker_half_opens_after_cooldown_with_injected_clock(
    make_client: Callable[..., PakasirClient], sandbox: Sandbox, transport: CountingTransport
) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=30.0, clock=clock)
    c = make_client(breaker=breaker, retries=0)
    sandbox.post("/sandbox/down")
    with pytest.raises(GatewayUnavailableError):
        c.create_qris("ORD-HALF", Decimal("10000"))
    assert breaker.state == "open" and transport.count == 1

    clock.advance(29.9)
    with pytest.raises(CircuitOpenError):
        c.create_qris("ORD-HALF", Decimal("10000"))
    assert transport.count == 1

    clock.advance(0.1)
    assert breaker.state == "half_open"
    with pytest.raises(GatewayUnavailableError):  # the trial call fails: open again
        c.create_qris("ORD-HALF", Decimal("10000"))
    assert transport.count == 2 and breaker.state == "open"

    clock.advance(30)
    sandbox.post("/sandbox/up")
    assert c.create_qris("ORD-HALF", Decimal("10000")).order_id == "ORD-HALF"
    assert transport.count == 3 and breaker.state == "closed"


def test_breaker_half_open_lets_one_trial_through() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=5, clock=clock)
    breaker.record_failure()
    assert not breaker.allow_request()
    clock.advance(5)
    assert breaker.allow_request()
    assert not breaker.allow_request()  # a second caller waits for the trial's verdict
    breaker.record_success()
    assert breaker.state == "closed" and breaker.allow_request()


# --------------------------------------------------------------------------- webhook parsing

GOOD = {
    "amount": 22000,
    "order_id": "240910HDE7C9",
    "project": "depodomain",
    "status": "completed",
    "payment_method": "qris",
    "completed_at": "2024-09-10T08:07:02.819+07:00",
}


def test_parse_webhook_accepts_documented_example() -> None:
    note = parse_webhook(GOOD)
    assert note.amount == Decimal("22000") and isinstance(note.amount, Decimal)
    assert note.completed_at == datetime(2024, 9, 10, 1, 7, 2, 819000, tzinfo=UTC)
    assert parse_webhook({**GOOD, "status": "Cancelled", "extra": 1}).status == "canceled"
    assert parse_webhook({**GOOD, "amount": Decimal("22000")}).amount == Decimal("22000")


@pytest.mark.parametrize(
    "change",
    [
        {"amount": None},
        {"amount": 22000.0},
        {"amount": 220.5},
        {"amount": -22000},
        {"amount": 0},
        {"amount": "22000"},
        {"amount": True},
        {"amount": Decimal("22000.5")},
        {"order_id": 123},
        {"order_id": ""},
        {"order_id": " padded "},
        {"project": None},
        {"status": 1},
        {"payment_method": ["qris"]},
        {"completed_at": "yesterday"},
        {"completed_at": "2024-09-10T08:07:02"},  # no offset
        {"completed_at": None},  # required when completed
        {"completed_at": 1725930422},
    ],
    ids=repr,
)
def test_parse_webhook_rejects_malformed(change: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        parse_webhook({**GOOD, **change})


@pytest.mark.parametrize("missing", sorted(GOOD))
def test_parse_webhook_rejects_missing_field(missing: str) -> None:
    body = {k: v for k, v in GOOD.items() if k != missing}
    with pytest.raises(ValueError, match=missing):
        parse_webhook(body)


def test_parse_webhook_rejects_non_object() -> None:
    with pytest.raises(ValueError):
        parse_webhook([1, 2])  # type: ignore[arg-type]


def test_client_refuses_float_or_fractional_amounts_before_sending(
    client: PakasirClient, transport: CountingTransport
) -> None:
    with pytest.raises(TypeError):
        client.create_qris("ORD-F", 1000.0)  # type: ignore[arg-type]
    for bad in (Decimal("1000.5"), Decimal("-5"), Decimal("0"), Decimal("NaN")):
        with pytest.raises(ValueError):
            client.create_qris("ORD-F", bad)
    with pytest.raises(ValueError):
        client.create_qris(" ORD-F", Decimal("1000"))
    assert transport.count == 0
