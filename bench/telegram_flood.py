"""`telegram-flood`: a QRIS flash sale under Telegram's send limits while a broadcast runs.

N buyers (default 1,000) hit an N/10-unit sale and the winners pay by QRIS at the Pakasir
sandbox, while the shop's own broadcast (/broadcast: a `broadcasts` row, one
`broadcast_recipients` row per shopper, sent by chained `quickcart.broadcast_slice` tasks) goes
to every shopper in the users table (5 × N audience users, both sales' buyers and the admin) and
admins receive notices; the same sale is run first without the broadcast, side by side. The
Telegram simulator enforces Telegram's limits (30 messages/s, 1/s per chat; 429 with
`retry_after`), so the pipe, not the engine, is the physical limit: the figures say who waits in
it."""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import text

from bench import prebuilt as push
from bench.common import Report, intent_key, percentile
from bench.harness import Stack, wait_until
from bench.orders import PRICE, start_shop
from quickcart.services import broadcast
from workers.routes import TASK_QUEUES

FLOOD_BUYERS = 10_000  # first id of the sale's buyers with the broadcast running
QUIET_BUYERS = 20_000  # first id of the same sale's buyers without it
AUDIENCE = 100_000  # first id of the broadcast's audience
ADMINS = (90_001, 90_002, 90_003)
BROADCASTER = ADMINS[0]  # an admin in the users table: the broadcast's author
NOTICES_PER_ADMIN = 10
POSTING = {"sendMessage", "sendPhoto", "sendDocument"}  # the calls Telegram's limits count
KEY = re.compile(r"KEY-\d+-\d+")  # a delivered unit's content (bench.harness.add_product)


class CallLog:
    """Every Bot API call the simulator recorded since the log was opened, fetched as it goes
    (the simulator keeps the last 20,000 calls only)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.since = stack.telegram.last_call_seq()
        self.calls: list[dict[str, Any]] = []
        self.samples: list[tuple[float, bool]] = []  # (when, work waiting for the pipe)
        self.broadcast_id: int | None = None
        self.broadcast_done = False

    def refresh(self) -> list[dict[str, Any]]:
        """Fetch the calls recorded since the last refresh (and note whether work is waiting
        for the pipe now: messages on the notify queue, or the broadcast still running);
        returns all of them."""
        busy = _queued(self.stack) > 0
        if self.broadcast_id is not None and not self.broadcast_done:
            self.broadcast_done = _broadcast_done(self.stack, self.broadcast_id)
            busy = busy or not self.broadcast_done
        self.samples.append((time.time(), busy))
        new = self.stack.telegram.calls(since=self.since)
        if new:
            self.calls.extend(new)
            self.since = int(new[-1]["seq"])
        return self.calls

    def accepted(self, method: str | None = None) -> list[dict[str, Any]]:
        """Calls Telegram accepted (of `method`, else every posting method)."""
        methods = {method} if method else POSTING
        return [c for c in self.calls if c["ok"] and c["method"] in methods]


@dataclass
class Sale:
    """What one run of the sale measured."""

    sold: int = 0
    refused: int = 0
    http_429: int = 0
    broadcast_sent: int = 0  # copies Telegram accepted
    broadcast_addressees: int = 0  # rows of broadcast_recipients
    broadcast_outcomes: Counter[str] = field(default_factory=Counter)  # recipients by status
    broadcast_seconds: float = 0.0  # created → finished (broadcasts row)
    send_rate: float = 0.0
    send_seconds: float = 0.0
    sent: int = 0
    deliveries: list[float] = field(default_factory=list)
    lost: Counter[str] = field(default_factory=Counter)
    duplicated: Counter[str] = field(default_factory=Counter)


def _push(stack: Stack, task: str, kwargs_list: list[dict[str, Any]]) -> None:
    """Queue notify tasks in their class's priority list, as the shop publishes them."""
    assert stack.client is not None and stack.redis is not None
    key = push.list_key(stack.client, "notify", task)
    for start in range(0, len(kwargs_list), 500):
        push.push_unsafe(stack.redis, [(key, push.build(stack.client, task, kwargs, "notify")[1])
                                       for kwargs in kwargs_list[start:start + 500]])


def _pay(stack: Stack, invoices: list[str]) -> list[int]:
    """Press "Bayar" on each invoice at the sandbox, 8 at a time (shoppers paying)."""
    assert stack.pakasir_app is not None
    url = stack.pakasir_app.url

    def pay(invoice: str) -> int:
        with httpx.Client(base_url=url, timeout=30) as client:
            return client.post(f"/sandbox/transactions/{invoice}/pay").status_code

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(pay, invoices))


def _notice_id(call: dict[str, Any]) -> str:
    """`admin:n` of an admin notice's call (its text ends with `#n`)."""
    return f'{call["params"]["chat_id"]}:{str(call["params"].get("text", "")).rsplit("#", 1)[-1]}'


def _queued(stack: Stack, in_hand: bool = False) -> int:
    """Messages waiting on the notify queue (any priority), plus with `in_hand` those a worker
    holds (sending, or waiting out a retry's or the next broadcast slice's countdown)."""
    assert stack.redis is not None and stack.client is not None
    lists = {push.list_key(stack.client, "notify", task)
             for task, queue in TASK_QUEUES.items() if queue == "notify"}
    pipe = stack.redis.pipeline(transaction=False)
    for key in sorted(lists):
        pipe.llen(key)
    if in_hand:
        pipe.hlen(stack.key("unacked"))
    return sum(int(n) for n in pipe.execute())


def _broadcast_done(stack: Stack, broadcast_id: int) -> bool:
    """The broadcast finished (every addressee settled; its runner closed it)."""
    return bool(stack.q("SELECT status = 'done' FROM broadcasts WHERE id = :b", b=broadcast_id))


def _start_broadcast(stack: Stack, tag: str) -> int:
    """/broadcast as the shop runs it: the broadcast and its addressees (every non-banned
    shopper in the users table) created as the admin, then its chain of slices started on the
    notify queue (what `workers.tasks.broadcast.run_broadcast` queues)."""
    assert stack.main is not None
    started = broadcast.start(stack.main, BROADCASTER, intent_key(f"bench-broadcast-{tag}"),
                              "text", f"Promo {tag}")
    _push(stack, "quickcart.broadcast_slice",
          [{"broadcast_id": started.broadcast_id, "runner": uuid.uuid4().hex}])
    stack.log(f"[{tag}] broadcast {started.broadcast_id} to {started.total} shoppers started")
    return started.broadcast_id


def _pipe_idle(stack: Stack) -> bool:
    """Nothing left on the notify queue and nothing in a worker's hands."""
    return _queued(stack, in_hand=True) == 0


def _count(found: Counter[str], expected: list[str], sale: Sale, kind: str) -> None:
    """Each expected message once: none missing (lost), none twice (duplicated)."""
    sale.lost[kind] += sum(1 for e in expected if found[e] == 0)
    sale.duplicated[kind] += sum(max(0, found[e] - 1) for e in expected)


def run_sale(stack: Stack, tag: str, product: int, buyers: list[int],
             with_broadcast: bool) -> Sale:
    """One flash sale paid by QRIS (with the shop's broadcast to every shopper running when
    `with_broadcast`); waits until every message it caused was sent and the broadcast is done,
    then measures."""
    sale = Sale()
    log = CallLog(stack)
    refused_429_before = int(stack.telegram.state.rate_limit.get("answered_429", 0))
    stack.log(f"[{tag}] {len(buyers)} buyers, {'with' if with_broadcast else 'no'} broadcast")
    if with_broadcast:
        log.broadcast_id = _start_broadcast(stack, tag)
    _push(stack, "quickcart.send_notice", [
        {"chat_id": admin, "key": "admin.health_changed", "params": {"changes": f"{tag} #{i}"},
         "once_key": f"bench:{tag}:notice:{admin}:{i}"}
        for i in range(NOTICES_PER_ADMIN) for admin in ADMINS])
    keys = {intent_key(f"flood-{tag}"): uid for uid in buyers}
    queue, _ids, messages = stack.build_messages("quickcart.create_order", [
        {"user_id": uid, "product_id": product, "quantity": 1, "payment_method": "qris",
         "idempotency_key": key} for key, uid in keys.items()])
    for start in range(0, len(messages), 50):
        stack.push(queue, messages[start:start + 50])

    def recorded() -> bool:
        stack.check_alive()
        log.refresh()
        return bool(stack.q("SELECT count(*) FROM idempotency_keys WHERE key = ANY(:k)"
                            " AND result IS NOT NULL", k=list(keys)) == len(keys))

    wait_until(recorded, what=f"[{tag}] intents", timeout=600, interval=0.3)
    units = int(stack.q("SELECT count(*) FROM orders o JOIN order_items i ON i.order_id = o.id"
                        " WHERE i.product_id = :p", p=product))

    def have_qr() -> bool:
        log.refresh()
        return bool(stack.q("SELECT count(*) FROM orders o JOIN order_items i"
                            " ON i.order_id = o.id WHERE i.product_id = :p"
                            " AND o.payment_number IS NOT NULL", p=product) == units)

    wait_until(have_qr, what=f"[{tag}] QR codes", timeout=600, interval=0.3)
    assert stack.main is not None
    with stack.main.connect() as conn:
        invoices = list(conn.execute(text(
            "SELECT DISTINCT o.invoice_id FROM orders o JOIN order_items i ON i.order_id = o.id"
            " WHERE i.product_id = :p AND o.status = 'pending'"), {"p": product}).scalars())
    stack.log(f"[{tag}] paying {len(invoices)} invoices at the sandbox")
    codes = _pay(stack, invoices)

    def delivered() -> bool:
        stack.check_alive()
        log.refresh()
        return bool(stack.q("SELECT count(*) FROM orders o JOIN order_items i"
                            " ON i.order_id = o.id WHERE i.product_id = :p"
                            " AND o.delivered_at IS NOT NULL", p=product) == len(invoices))

    wait_until(delivered, what=f"[{tag}] deliveries", timeout=900, interval=0.3)
    # Besides the broadcast (counted against its recipients): notices, a QR photo and a
    # delivery per payer, a "sold out" reply per other buyer. Messages the shop adds on its own
    # (the admin's low-stock alert and sales digest, the broadcast's status) come on top.
    promo = f"Promo {tag}"
    expected_sends = len(ADMINS) * NOTICES_PER_ADMIN + 2 * len(invoices) \
        + (len(buyers) - len(invoices))

    def all_sent() -> bool:
        stack.check_alive()
        log.refresh()
        others = sum(1 for c in log.accepted()
                     if promo not in str(c["params"].get("text", "")))
        return (others >= expected_sends and (log.broadcast_id is None or log.broadcast_done)
                and _pipe_idle(stack))

    stack.log(f"[{tag}] waiting for the pipe to carry {expected_sends} messages"
              + (" and the broadcast" if with_broadcast else ""))
    wait_until(all_sent, what=f"[{tag}] every message sent", timeout=1800, interval=1.0)
    wait_until(lambda: stack.q("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0,
               what="outbox relayed", timeout=120, interval=0.5)
    log.refresh()

    with stack.main.connect() as conn:
        outcomes = conn.execute(text(
            "SELECT result->>'status' AS status, result->>'error' AS error"
            " FROM idempotency_keys WHERE key = ANY(:k)"), {"k": list(keys)}).all()
        paid = conn.execute(text(
            "SELECT o.user_id, s.content, extract(epoch FROM o.paid_at) AS paid_at"
            " FROM orders o JOIN order_items i ON i.order_id = o.id"
            " JOIN product_stocks s ON s.id = i.stock_id"
            " WHERE i.product_id = :p AND o.status = 'paid'"), {"p": product}).all()
    sale.sold = len(paid)
    sale.refused = sum(1 for o in outcomes if o.error == "out_of_stock")
    sale.http_429 = int(stack.telegram.state.rate_limit.get("answered_429", 0)) \
        - refused_429_before
    if any(c >= 400 for c in codes):
        sale.lost["payments refused by the sandbox"] += sum(c >= 400 for c in codes)

    texts = log.accepted("sendMessage")
    accepted_at: dict[str, float] = {}
    key_count: Counter[str] = Counter()
    wanted = {r.content for r in paid}
    for call in texts:
        for content in set(KEY.findall(str(call["params"].get("text", "")))) & wanted:
            key_count[content] += 1
            accepted_at.setdefault(content, float(call["time"]) + call["duration"])
    sale.deliveries = [accepted_at[r.content] - float(r.paid_at) for r in paid
                       if r.content in accepted_at]
    _count(key_count, [r.content for r in paid], sale, "deliveries")
    by_chat = Counter(int(c["params"]["chat_id"]) for c in texts
                      if promo in str(c["params"].get("text", "")))
    sale.broadcast_sent = sum(by_chat.values())
    if log.broadcast_id is not None:
        _count_broadcast(stack, log.broadcast_id, by_chat, sale)
    elif by_chat:
        sale.duplicated["broadcast copies without a broadcast"] += sum(by_chat.values())
    notices = Counter(_notice_id(c) for c in texts if int(c["params"]["chat_id"]) in ADMINS
                      and f"{tag} #" in str(c["params"].get("text", "")))
    _count(notices, [f"{a}:{i}" for a in ADMINS for i in range(NOTICES_PER_ADMIN)], sale,
           "admin notices")
    photos = Counter(str(c["params"]["chat_id"]) for c in log.accepted("sendPhoto"))
    payers = {str(r.user_id) for r in paid}
    _count(photos, sorted(payers), sale, "QR photos")
    buyer_ids = set(buyers)
    refusals = Counter(str(c["params"]["chat_id"]) for c in texts
                       if int(c["params"]["chat_id"]) in buyer_ids
                       and str(c["params"]["chat_id"]) not in payers
                       and promo not in str(c["params"].get("text", "")))
    _count(refusals, [str(u) for u in buyers if str(u) not in payers], sale, "sold-out replies")

    # The rate while there is work: messages accepted while messages waited on the notify
    # queue or the broadcast ran (its addressees wait as rows, its next slice in a worker's
    # hands), over the time they did (sampled at each poll of the waits above). Not counted:
    # the tail, when the last few are in the workers' hands (or waiting out a retry).
    posted = sorted(float(c["time"]) + c["duration"] for c in log.accepted())
    sale.sent = len(posted)
    busy = [(a, b) for (a, was_busy), (b, _) in zip(log.samples, log.samples[1:], strict=False)
            if was_busy]
    sale.send_seconds = sum(b - a for a, b in busy)
    in_busy = sum(1 for t in posted if any(a <= t < b for a, b in busy))
    sale.send_rate = in_busy / sale.send_seconds if sale.send_seconds else 0.0
    return sale


def _count_broadcast(stack: Stack, broadcast_id: int, by_chat: Counter[int], sale: Sale) -> None:
    """The broadcast against its recipients: each 'sent' one exactly one accepted copy (lost
    when none, twice when more); 'unsure' ones at most one; none to anyone else (a copy to a
    'failed' or 'blocked' recipient, or to a shopper not addressed, was not recorded as sent).
    Also its outcome by status and its duration."""
    assert stack.main is not None
    with stack.main.connect() as conn:
        recipients = {int(r.user_id): str(r.status) for r in conn.execute(text(
            "SELECT user_id, status FROM broadcast_recipients WHERE broadcast_id = :b"),
            {"b": broadcast_id}).all()}
        seconds = conn.execute(text(
            "SELECT extract(epoch FROM finished_at - created_at) FROM broadcasts"
            " WHERE id = :b"), {"b": broadcast_id}).scalar()
    sale.broadcast_addressees = len(recipients)
    sale.broadcast_outcomes = Counter(recipients.values())
    sale.broadcast_seconds = float(seconds or 0.0)
    sale.lost["broadcast copies (recorded sent)"] += sum(
        1 for uid, status in recipients.items() if status == "sent" and by_chat[uid] == 0)
    sale.duplicated["broadcast copies"] += sum(max(0, n - 1) for n in by_chat.values())
    sale.duplicated["broadcast copies not recorded as sent"] += sum(
        1 for uid, n in by_chat.items() if n and recipients.get(uid) not in ("sent", "unsure"))


def run(size: int, as_json: bool) -> Report:
    report = Report("telegram-flood")
    units = max(1, size // 10)
    with Stack("telegram-flood", pakasir=True, quiet=as_json) as stack:
        limit = int(stack.telegram.state.rate_limit["global_per_second"])
        limits_on = bool(stack.telegram.state.rate_limit["enabled"])
        flood_buyers = stack.add_users(FLOOD_BUYERS, size, balance=0)
        quiet_buyers = stack.add_users(QUIET_BUYERS, size, balance=0)
        audience = stack.add_users(AUDIENCE, 5 * size, balance=0)
        for admin in ADMINS:
            stack.telegram.state.add_user(f"Admin {admin}", user_id=admin, language_code="id")
        # The broadcast's author must be an admin in the users table (as /broadcast checks);
        # as such it also hears the shop's own admin messages (low stock, sales digest) in
        # both sales alike.
        stack.exec("INSERT INTO users (id, name, username, bank_id, member_status)"
                   " VALUES (:i, :n, :u, :b, 'admin')", i=BROADCASTER, n=f"Admin {BROADCASTER}",
                   u=f"admin{BROADCASTER}", b=f"{900000 + BROADCASTER % 100000:06d}")
        stack.exec("INSERT INTO admin_grants (user_id, source) VALUES (:i, 'command')",
                   i=BROADCASTER)
        stack.add_product(1, PRICE, units)
        stack.add_product(2, PRICE, units)
        stack.vacuum()
        start_shop(stack, 8)
        stack.start_api()
        quiet = run_sale(stack, "quiet", 2, quiet_buyers, with_broadcast=False)
        flood = run_sale(stack, "flood", 1, flood_buyers, with_broadcast=True)
        shoppers = int(stack.q("SELECT count(*) FROM users"))

    pace = broadcast.BroadcastSettings().broadcast_rate_per_second
    lost = sum(flood.lost.values()) + sum(quiet.lost.values())
    duplicated = sum(flood.duplicated.values()) + sum(quiet.duplicated.values())
    report.add("buyers", size, "buyers (each run)")
    report.add("units", units, "units in stock (each run)")
    report.add("telegram_limits_on", limits_on, "simulator enforces Telegram's limits")
    report.add("sold", flood.sold, "sold, broadcast running")
    report.add("sold_no_broadcast", quiet.sold, "sold, no broadcast")
    report.add("refused", flood.refused, "told 'sold out', broadcast running")
    report.add("refused_no_broadcast", quiet.refused, "told 'sold out', no broadcast")
    outcomes = flood.broadcast_outcomes
    copies = outcomes["sent"] + outcomes["unsure"]
    report.add("audience", len(audience), "audience users (besides buyers and the admin)")
    report.add("broadcast_addressees", flood.broadcast_addressees,
               f"broadcast addressees (all {shoppers} users rows)")
    report.add("broadcast_sent", flood.broadcast_sent, "broadcast copies Telegram accepted")
    for status in ("sent", "unsure", "failed", "blocked"):
        report.add(f"broadcast_{status}", outcomes[status], f"  recipients recorded {status}")
    report.add("broadcast_seconds", flood.broadcast_seconds, "  broadcast created -> done", "s")
    report.add("broadcast_rate_per_s",
               copies / flood.broadcast_seconds if flood.broadcast_seconds else 0.0,
               f"  copies/s (sent + unsure; its pace: {pace}/s)", "msg/s")
    report.add("messages_sent", flood.sent, "messages Telegram accepted, broadcast running")
    report.add("send_rate_per_s", flood.send_rate,
               "  while messages wait or the broadcast runs", "msg/s")
    report.add("send_rate_limit_per_s", limit, "  Telegram's global limit", "msg/s")
    report.add("send_rate_ratio", flood.send_rate / limit if limit else 0.0,
               "  send rate / limit", "x")
    report.add("send_seconds", flood.send_seconds,
               "  time with messages waiting or the broadcast running", "s")
    report.add("delivery_p50_s", percentile(flood.deliveries, 50),
               "payment confirmed -> delivery accepted p50, broadcast running", "s")
    report.add("delivery_p99_s", percentile(flood.deliveries, 99),
               "payment confirmed -> delivery accepted p99, broadcast running", "s")
    report.add("delivery_p50_s_no_broadcast", percentile(quiet.deliveries, 50),
               "payment confirmed -> delivery accepted p50, no broadcast", "s")
    report.add("delivery_p99_s_no_broadcast", percentile(quiet.deliveries, 99),
               "payment confirmed -> delivery accepted p99, no broadcast", "s")
    report.add("http_429", flood.http_429 + quiet.http_429, "429 answers received (both runs)")
    report.add("lost", lost, "messages lost (both runs)")
    report.add("duplicated", duplicated, "messages sent twice (both runs)")
    for name, run_ in (("broadcast", flood), ("no broadcast", quiet)):
        for kind, n in {**run_.lost}.items():
            if n:
                report.note(f"{name}: {n} {kind} lost")
        for kind, n in {**run_.duplicated}.items():
            if n:
                report.note(f"{name}: {n} {kind} sent twice")
    report.check("target_sold_exact", flood.sold == units and quiet.sold == units
                 and flood.refused == size - units and quiet.refused == size - units,
                 f"target: exactly {units} sold, {size - units} told 'sold out' (each run)")
    report.check("target_send_rate_ge_0_9_limit", flood.send_rate >= 0.9 * limit,
                 "target: send rate >= 0.9 x the global limit")
    report.check("target_delivery_p99_le_2s", percentile(flood.deliveries, 99) <= 2.0,
                 "target: delivery p99 <= 2 s with the broadcast running")
    report.check("target_none_lost_or_twice", lost == 0 and duplicated == 0,
                 "target: 0 lost, 0 duplicated")
    return report
