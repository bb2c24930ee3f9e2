"""Probe: bulk stock import speed vs a raw COPY of the same keys, and the importer's peak RSS.

Usage: python bench/import_probe.py [N_KEYS]   (default 1,000,000)

Creates a throw-away database on the configured/local/embedded PostgreSQL, migrates it, writes
N short keys to a temp file (streamed), then times, each on an emptied product_stocks:
  1. a raw `COPY product_stocks (product_id, content) FROM STDIN` of the file (one transaction),
  2. quickcart.services.stock_import.import_stock of the same file,
  3. the raw COPY again (so drift between runs shows).
Prints rows/s of each, the ratio import/COPY, and the process's peak RSS (the import runs in a
child process so its peak is its own). No assertion: the figures are for a human.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import sys
import tempfile
import time
import uuid

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from quickcart.db.migrate import migrate_all
from quickcart.db.urls import service_urls


def write_keys(path: str, n: int) -> None:
    """N distinct short keys, one per line, written in chunks."""
    with open(path, "w", encoding="utf-8") as out:
        chunk: list[str] = []
        for i in range(n):
            chunk.append(f"KEY-{i:08d}-{(i * 2654435761) % 4294967296:08x}")
            if len(chunk) == 100_000:
                out.write("\n".join(chunk) + "\n")
                chunk = []
        if chunk:
            out.write("\n".join(chunk) + "\n")


def empty(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        conn.exec_driver_sql("TRUNCATE product_stocks, audit_outbox, idempotency_keys CASCADE")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE product_stocks")
        conn.exec_driver_sql("CHECKPOINT")


def raw_copy(engine: Engine, path: str, product_id: int) -> float:
    """Seconds for COPY of the file into product_stocks (prefixing the product id), committed."""
    fd, tsv = tempfile.mkstemp(suffix=".tsv")
    with os.fdopen(fd, "w", encoding="utf-8") as out, open(path, encoding="utf-8") as src:
        for line in src:
            out.write(f"{product_id}\t{line}")
    try:
        start = time.perf_counter()
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            with open(tsv, encoding="utf-8") as f:
                cur.copy_expert("COPY product_stocks (product_id, content) FROM STDIN", f)
            raw.commit()
        finally:
            raw.close()
        return time.perf_counter() - start
    finally:
        os.unlink(tsv)


def _child_import(url: str, path: str, product_id: int, queue: multiprocessing.Queue) -> None:
    from quickcart.services.stock_import import import_stock

    engine = create_engine(url)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    marks: list[float] = []
    start = time.perf_counter()
    result = import_stock(engine, product_id, path, upload_id=f"probe-{uuid.uuid4().hex}",
                          actor_id=1,
                          progress=lambda done, total: marks.append(time.perf_counter()))
    elapsed = time.perf_counter() - start
    steps = [b - a for a, b in zip([start, *marks], marks, strict=False)]
    if steps:
        print(f"  batches: {len(steps)}, first {steps[0]:.2f} s, last {steps[-1]:.2f} s,"
              f" commit {elapsed - (marks[-1] - start):.2f} s", flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    engine.dispose()
    queue.put((elapsed, result.added, before, peak))


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    base = service_urls().database_url
    name = f"qc_probe_{uuid.uuid4().hex[:8]}"
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    audit = make_url(base).set(database=name + "_audit").render_as_string(hide_password=False)
    migrate_all(url, audit)
    engine = create_engine(url)
    fd, path = tempfile.mkstemp(suffix=".txt")
    os.close(fd)
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO users (id, name, bank_id, member_status)"
                              " VALUES (1, 'admin', '100001', 'admin')"))
            conn.execute(text("INSERT INTO products (id, name, customer_price)"
                              " VALUES (1, 'probe', 1000)"))
        write_keys(path, n)
        print(f"{n:,} keys, file {os.path.getsize(path) / 1e6:.1f} MB")

        empty(engine)
        t_copy1 = raw_copy(engine, path, 1)
        print(f"raw COPY #1   : {t_copy1:7.2f} s  {n / t_copy1:10,.0f} rows/s")

        empty(engine)
        ctx = multiprocessing.get_context("spawn")
        queue: multiprocessing.Queue = ctx.Queue()
        child = ctx.Process(target=_child_import, args=(url, path, 1, queue))
        child.start()
        elapsed, added, before, peak = queue.get()
        child.join()
        print(f"import_stock  : {elapsed:7.2f} s  {added / elapsed:10,.0f} rows/s"
              f"  (added {added:,}; RSS {before / 1024:.0f} MB before, peak {peak / 1024:.0f} MB)")

        empty(engine)
        t_copy2 = raw_copy(engine, path, 1)
        print(f"raw COPY #2   : {t_copy2:7.2f} s  {n / t_copy2:10,.0f} rows/s")
        best = min(t_copy1, t_copy2)
        print(f"import / COPY : {best / elapsed:.2f}x of raw COPY rows/s (best COPY run)")
    finally:
        os.unlink(path)
        engine.dispose()
        server = create_engine(make_url(base).set(database="postgres"),
                               isolation_level="AUTOCOMMIT")
        with server.connect() as conn:
            for db in (name, name + "_audit"):
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        server.dispose()


if __name__ == "__main__":
    main()
