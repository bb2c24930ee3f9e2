"""The Pakasir sandbox's page: ``GET /`` lists transactions, with a "Bayar" button per pending one.

The button posts to ``/sandbox/transactions/{order_id}/pay``, which pays the transaction and
sends its webhook the way the real gateway does when a customer pays, then returns to the page.
"""

from __future__ import annotations

import html
from decimal import Decimal

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from quickcart.domain.money import format_idr
from sandbox.pakasir_state import PENDING, WIB, SandboxState, Transaction, pay
from sandbox.pakasir_webhooks import WebhookSender


def add_page_routes(app: FastAPI, state: SandboxState, sender: WebhookSender) -> None:
    """Register the page, ``GET /``, and its Bayar button's POST endpoint on `app`."""

    @app.post("/sandbox/transactions/{order_id}/pay")
    async def pay_button(order_id: str) -> Response:
        body = pay(state, order_id)
        if body is not None:
            sender.dispatch(body, source="pay-button")
        return RedirectResponse("/", status_code=303)

    @app.get("/pay/{project}/{amount}", response_class=HTMLResponse)
    async def checkout_page(project: str, amount: int, order_id: str = "",
                            qris_only: int = 0) -> HTMLResponse:
        # Pakasir's documented payment page for one transaction (the shop's "Checkout Page"
        # button): the same row as on the index page, with its QR and Bayar button.
        with state.lock:
            now = state.now()
            tx = state.transactions.get(order_id)
            rows = ([(tx, tx.status_at(now))] if tx is not None and tx.project == project
                    and tx.amount == amount else [])
            hook = state.webhook_url
        if not rows:
            return HTMLResponse("<!doctype html><p>Transaksi tidak ditemukan.</p>",
                                status_code=404)
        return HTMLResponse(render_index(project, hook, rows))

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        with state.lock:
            now = state.now()
            rows = [(tx, tx.status_at(now)) for tx in state.transactions.values()]
            hook = state.webhook_url
        return HTMLResponse(render_index(state.project, hook, rows))


def _qr_svg(payload: str) -> str:
    """The QRIS payload as an inline SVG QR code, or nothing when segno is missing."""
    try:
        import segno
    except ImportError:  # segno is optional for the sandbox page
        return ""
    return str(segno.make(payload, error="m").svg_inline(scale=2))


def render_index(
    project: str, webhook_url: str | None, rows: list[tuple[Transaction, str]]
) -> str:
    """The page: every transaction, newest first, with a Bayar button on pending ones."""
    esc = html.escape
    body_rows = []
    for tx, status in sorted(rows, key=lambda r: r[0].created_at, reverse=True):
        action = ""
        qr = ""
        if status == PENDING:
            action = (
                f'<form method="post" action="/sandbox/transactions/{esc(tx.order_id, quote=True)}'
                '/pay"><button type="submit">Bayar</button></form>'
            )
            qr = f"<details><summary>QRIS</summary>{_qr_svg(tx.payment_number)}</details>"
        body_rows.append(
            "<tr>"
            f"<td><code>{esc(tx.order_id)}</code></td>"
            f"<td>{esc(format_idr(Decimal(tx.amount)))}</td>"
            f"<td>{esc(format_idr(Decimal(tx.fee)))}</td>"
            f"<td><b>{esc(format_idr(Decimal(tx.total_payment)))}</b></td>"
            f'<td class="{esc(status)}">{esc(status)}</td>'
            f"<td>{esc(tx.expired_at.astimezone(WIB).strftime('%Y-%m-%d %H:%M:%S WIB'))}</td>"
            f"<td>{action}{qr}</td>"
            "</tr>"
        )
    table = "".join(body_rows) or '<tr><td colspan="7">Belum ada transaksi.</td></tr>'
    return f"""<!doctype html>
<html lang="id"><head><meta charset="utf-8"><title>Pakasir sandbox: {esc(project)}</title>
<meta http-equiv="refresh" content="5">
<style>
body{{font-family:system-ui,sans-serif;margin:2rem}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.4rem .6rem;text-align:left;vertical-align:top}}
.pending{{color:#b58900}} .completed{{color:#2aa198}} .expired,.canceled{{color:#999}}
</style></head><body>
<h1>Pakasir sandbox</h1>
<p>Proyek <code>{esc(project)}</code> &middot;
webhook: <code>{esc(webhook_url or "(none)")}</code></p>
<table><thead><tr><th>Order ID</th><th>Jumlah</th><th>Biaya</th><th>Total</th><th>Status</th>
<th>Kedaluwarsa</th><th></th></tr></thead><tbody>{table}</tbody></table>
</body></html>"""
