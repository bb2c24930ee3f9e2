"""Bulk stock import against real PostgreSQL: parsing, dedupe, idempotency, refusals, scale."""

from __future__ import annotations

import io
import threading
import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from quickcart.domain.errors import ShopError
from quickcart.services.stock_import import MAX_CONTENT_CHARS, ImportResult, import_stock
from tests.conftest import scalar

ADMIN = 1
PRODUCT = 7


@pytest.fixture()
def shop(db: Engine) -> Engine:
    """An admin and one product."""
    with db.begin() as conn:
        conn.execute(text("INSERT INTO users (id, name, bank_id, member_status)"
                          " VALUES (:a, 'admin', '100001', 'admin')"), {"a": ADMIN})
        conn.execute(text("INSERT INTO products (id, name, customer_price)"
                          " VALUES (:p, 'Key', 10000)"), {"p": PRODUCT})
    return db


def contents(engine: Engine, product_id: int = PRODUCT) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(
            text("SELECT content FROM product_stocks WHERE product_id = :p ORDER BY content"),
            {"p": product_id}).scalars())


def run(engine: Engine, data: bytes, upload: str | None = None, **kw: object) -> ImportResult:
    return import_stock(engine, PRODUCT, io.BytesIO(data), upload_id=upload or uuid.uuid4().hex,
                        actor_id=ADMIN, **kw)  # type: ignore[arg-type]


def test_plain_lines_with_blanks_duplicates_bom_and_crlf(shop: Engine) -> None:
    data = "\ufeffAAA-1\r\n\r\n  BBB-2  \r\nAAA-1\r\n\t\r\nCCC 3\twith tab\\x\r\nBBB-2".encode()
    result = run(shop, data)
    assert result == ImportResult(added=3, duplicates_skipped=2, blank_skipped=2, total_lines=7)
    assert contents(shop) == ["AAA-1", "BBB-2", "CCC 3\twith tab\\x"]


def test_bom_on_a_later_line_and_lone_cr_line_endings(shop: Engine) -> None:
    result = run(shop, "K1\r\ufeffK2\rK3\n".encode())
    assert result.added == 3
    assert contents(shop) == ["K1", "K2", "K3"]


def test_csv_with_a_content_column(shop: Engine) -> None:
    data = (
        "\ufeffid,Content,note\n"
        "1,KEY-A,first\n"
        '2,"user:pass, with comma",x\n'
        '3,"multi\nline",y\n'
        "4,,blank\n"
        "5,KEY-A,dup\n"
        "6\n"
    ).encode()
    result = run(shop, data)
    assert result == ImportResult(added=3, duplicates_skipped=1, blank_skipped=2, total_lines=6)
    assert contents(shop) == ["KEY-A", "multi\nline", "user:pass, with comma"]


def test_a_plain_line_with_commas_is_not_csv(shop: Engine) -> None:
    result = run(shop, b"user,pass\nother,secret\n")
    assert result.added == 2
    assert contents(shop) == ["other,secret", "user,pass"]


def test_dedupe_against_unsold_stock_but_not_sold_units(shop: Engine) -> None:
    with shop.begin() as conn:
        conn.execute(text("INSERT INTO users (id, name, bank_id) VALUES (2, 'buyer', '100002')"))
        conn.execute(text("INSERT INTO product_stocks (product_id, content) VALUES"
                          " (:p, 'FREE'), (:p, 'RESERVED'), (:p, 'SOLD')"), {"p": PRODUCT})
        order_id = conn.execute(text(
            "INSERT INTO orders (invoice_id, user_id, subtotal, total_bill, payment_method)"
            " VALUES ('INV1', 2, 20000, 20000, 'account_balance') RETURNING id")).scalar_one()
        conn.execute(text("UPDATE product_stocks SET order_id = :o"
                          " WHERE content IN ('RESERVED', 'SOLD')"), {"o": order_id})
        conn.execute(text("INSERT INTO order_items (order_id, product_id, stock_id, price_per_unit)"
                          " SELECT :o, product_id, id, 10000 FROM product_stocks"
                          " WHERE order_id = :o"), {"o": order_id})
        conn.execute(text("UPDATE orders SET status = 'paid', paid_at = now() WHERE id = :o"),
                     {"o": order_id})
        conn.execute(text("UPDATE product_stocks SET is_sold = true WHERE content = 'SOLD'"))
    result = run(shop, b"FREE\nRESERVED\nSOLD\nNEW\n")
    # Unsold (free or reserved) contents are duplicates; a sold key re-added is a new unit.
    assert result == ImportResult(added=2, duplicates_skipped=2, blank_skipped=0, total_lines=4)
    assert contents(shop) == ["FREE", "NEW", "RESERVED", "SOLD", "SOLD"]


def test_dedupe_is_per_product(shop: Engine) -> None:
    with shop.begin() as conn:
        conn.execute(text("INSERT INTO products (id, name, customer_price) VALUES (8, 'B', 1)"))
        conn.execute(text("INSERT INTO product_stocks (product_id, content) VALUES (8, 'X')"))
    assert run(shop, b"X\n").added == 1


def test_same_upload_twice_adds_nothing_the_second_time(shop: Engine) -> None:
    first = run(shop, b"A\nB\nA\n", upload="file-1:7")
    audit_rows = scalar(shop, "SELECT count(*) FROM audit_outbox"
                              " WHERE entity_type = 'product_stocks'")
    assert audit_rows == 2
    again = run(shop, b"A\nB\nC\n", upload="file-1:7")
    assert again == ImportResult(added=2, duplicates_skipped=1, blank_skipped=0, total_lines=3,
                                 already_imported=True)
    assert first.already_imported is False
    assert contents(shop) == ["A", "B"]
    assert scalar(shop, "SELECT count(*) FROM audit_outbox"
                        " WHERE entity_type = 'product_stocks'") == audit_rows


def test_audit_rows_carry_the_admin_and_no_key(shop: Engine) -> None:
    run(shop, b"SECRET-KEY\n")
    with shop.connect() as conn:
        row = conn.execute(text("SELECT actor_id, actor_type, after_state->>'content' AS c"
                                " FROM audit_outbox WHERE entity_type = 'product_stocks'")).one()
    assert (row.actor_id, row.actor_type) == (ADMIN, "admin")
    assert row.c.startswith("sha256:") and "SECRET" not in row.c


def test_concurrent_uploads_of_the_same_key_add_it_once(shop: Engine) -> None:
    results: list[ImportResult] = []
    barrier = threading.Barrier(2)

    def go(name: str) -> None:
        barrier.wait()
        results.append(run(shop, b"SHARED\n" + name.encode() + b"\n", upload=name))

    threads = [threading.Thread(target=go, args=(n,)) for n in ("U1", "U2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(r.added for r in results) == [1, 2]
    assert contents(shop) == ["SHARED", "U1", "U2"]


def test_unknown_product_imports_nothing(shop: Engine) -> None:
    with pytest.raises(ShopError) as info:
        import_stock(shop, 999, io.BytesIO(b"A\n"), upload_id="u", actor_id=ADMIN)
    assert info.value.code == "product_not_found"
    assert scalar(shop, "SELECT count(*) FROM product_stocks") == 0
    assert scalar(shop, "SELECT count(*) FROM idempotency_keys") == 0
    assert scalar(shop, "SELECT count(*) FROM audit_outbox"
                        " WHERE entity_type = 'product_stocks'") == 0


def test_too_long_line_refuses_the_whole_file(shop: Engine) -> None:
    lines = [f"K{i}" for i in range(120)]
    lines[100] = "x" * (MAX_CONTENT_CHARS + 1)
    data = ("\n".join(lines) + "\n").encode()
    with pytest.raises(ShopError) as info:
        run(shop, data, upload="long", batch_size=10)  # earlier batches were already COPYed
    assert info.value.code == "stock_line_too_long"
    assert info.value.params["line"] == 101
    assert scalar(shop, "SELECT count(*) FROM product_stocks") == 0
    assert scalar(shop, "SELECT count(*) FROM idempotency_keys") == 0
    # The upload was not consumed: the fixed file imports under the same id.
    lines[100] = "x" * MAX_CONTENT_CHARS
    assert run(shop, ("\n".join(lines)).encode(), upload="long").added == 120


def test_a_huge_line_is_refused_without_reading_it_whole(shop: Engine) -> None:
    with pytest.raises(ShopError) as info:
        run(shop, b"A\n" + b"y" * 5_000_000)
    assert info.value.code == "stock_line_too_long"
    assert info.value.params["line"] == 2


def test_invalid_utf8_and_nul_are_refused(shop: Engine) -> None:
    with pytest.raises(ShopError) as info:
        run(shop, b"A\nB\xff\xfe\n")
    assert info.value.code == "stock_not_utf8"
    with pytest.raises(ShopError) as info:
        run(shop, b"A\nB\x00C\n")
    assert info.value.code == "stock_line_invalid"
    assert info.value.params["line"] == 2
    assert scalar(shop, "SELECT count(*) FROM product_stocks") == 0


def test_empty_file(shop: Engine) -> None:
    assert run(shop, b"") == ImportResult(0, 0, 0, 0)
    assert run(shop, b"\n \n") == ImportResult(0, 0, 2, 2)


def test_progress_reports_each_batch(shop: Engine, tmp_path: Path) -> None:
    path = tmp_path / "keys.txt"
    path.write_text("".join(f"P{i}\n" for i in range(25)))
    calls: list[tuple[int, int]] = []
    result = import_stock(shop, PRODUCT, path, upload_id="p", actor_id=ADMIN, batch_size=10,
                          progress=lambda done, total: calls.append((done, total)))
    assert result.added == 25
    assert calls == [(10, 25), (20, 25), (25, 25)]


def test_200k_line_file_imports_every_key(shop: Engine, tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    with path.open("w") as out:
        for i in range(200_000):
            out.write(f"BIG-{i:07d}\n")
        out.write("BIG-0000000\n\n")
    result = import_stock(shop, PRODUCT, str(path), upload_id="big", actor_id=ADMIN)
    assert result == ImportResult(added=200_000, duplicates_skipped=1, blank_skipped=1,
                                  total_lines=200_002)
    assert scalar(shop, "SELECT count(*) FROM product_stocks WHERE product_id = :p",
                  p=PRODUCT) == 200_000
    assert scalar(shop, "SELECT count(DISTINCT content) FROM product_stocks") == 200_000


def test_imported_ids_are_uuid7_in_file_order(shop: Engine) -> None:
    # Ordered ids keep the primary key's inserts at its right edge (stock_import docstring).
    result = run(shop, b"ZED\nALPHA\n\nMIKE\nALPHA\n", batch_size=2)
    assert result.added == 3
    with shop.connect() as conn:
        rows = conn.execute(text("SELECT id, content FROM product_stocks"
                                 " WHERE product_id = :p ORDER BY id"), {"p": PRODUCT}).all()
    assert [r.content for r in rows] == ["ZED", "ALPHA", "MIKE"]
    ids = [uuid.UUID(str(r.id)) for r in rows]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in ids)
    assert len(set(ids)) == 3


def test_a_refused_line_far_into_a_streamed_file_rolls_everything_back(shop: Engine) -> None:
    # Well past the first COPY chunk: the refusal is raised while COPY is already streaming.
    lines = [f"STREAM-{i:06d}" for i in range(30_000)]
    lines[25_000] = "BAD\x00KEY"
    with pytest.raises(ShopError) as info:
        run(shop, ("\n".join(lines) + "\n").encode(), upload="stream")
    assert info.value.code == "stock_line_invalid"
    assert info.value.params["line"] == 25_001
    assert scalar(shop, "SELECT count(*) FROM product_stocks") == 0
    assert scalar(shop, "SELECT count(*) FROM idempotency_keys") == 0


def test_import_items_twice_in_one_transaction(shop: Engine) -> None:
    from quickcart.db.uow import unit_of_work
    from quickcart.services.stock_import import import_items

    with unit_of_work(shop) as uow:
        uow.set_actor(ADMIN, "admin")
        first = import_items(uow.session, PRODUCT, ["A", "B"])
        second = import_items(uow.session, PRODUCT, ["B", "C"])
        uow.commit()
    assert (first.added, second.added, second.duplicates_skipped) == (2, 1, 1)
    assert contents(shop) == ["A", "B", "C"]


def test_reading_memory_does_not_grow_with_the_file(shop: Engine, tmp_path: Path) -> None:
    import tracemalloc

    path = tmp_path / "mem.txt"
    with path.open("w") as out:
        for i in range(100_000):
            out.write(f"MEM-{i:07d}-{'x' * 40}\n")  # 5.6 MB
    tracemalloc.start()
    try:
        result = import_stock(shop, PRODUCT, path, upload_id="mem", actor_id=ADMIN)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.added == 100_000
    # Rows are streamed to COPY in ~64 KB chunks; nothing is kept per line.
    assert peak < 2 * 2**20, peak
