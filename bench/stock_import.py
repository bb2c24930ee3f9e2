"""`import`: a million keys through the bulk-import task vs a raw COPY of the same file."""

from __future__ import annotations

import os
import tempfile
import threading
import time

from bench.common import Report
from bench.harness import Proc, Stack, wait_until
from bench.import_probe import empty, raw_copy, write_keys


class PeakRss:
    """Samples a process tree's RSS every `interval` seconds in a thread; keeps the peak."""

    def __init__(self, proc: Proc, interval: float = 0.05) -> None:
        self.proc = proc
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.tree_rss())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run(size: int, as_json: bool) -> Report:
    report = Report("import")
    fd, path = tempfile.mkstemp(prefix="qc-bench-keys-", suffix=".txt")
    os.close(fd)
    try:
        with Stack("import", telegram=False, quiet=as_json) as stack:
            assert stack.main is not None
            stack.exec("INSERT INTO users (id, name, bank_id, member_status)"
                       " VALUES (1, 'admin', '100001', 'admin')")
            stack.add_product(1, 1000, 0)
            write_keys(path, size)
            stack.log(f"{size:,} keys, {os.path.getsize(path) / 1e6:.1f} MB")
            worker = stack.start_worker("bulk", "bulk", 1)
            time.sleep(1)
            idle_rss = worker.tree_rss()

            empty(stack.main)
            t_copy1 = raw_copy(stack.main, path, 1)
            stack.log(f"raw COPY #1: {t_copy1:.2f} s")

            empty(stack.main)
            upload = f"bench-{os.getpid()}-{time.time_ns()}"
            with PeakRss(worker) as sampler:
                t0 = time.perf_counter()
                stack.send("quickcart.import_stock", product_id=1, actor_id=1, upload_id=upload,
                           path=path)

                def imported() -> bool:
                    stack.check_alive()
                    return bool(stack.q("SELECT count(*) FROM idempotency_keys"
                                        " WHERE key LIKE :k AND result IS NOT NULL",
                                        k=f"%{upload}%"))

                wait_until(imported, what="import", timeout=1800, interval=0.1)
                t_import = time.perf_counter() - t0
            added = stack.q("SELECT count(*) FROM product_stocks WHERE product_id = 1")
            stack.log(f"import task: {t_import:.2f} s, {added:,} rows")

            empty(stack.main)
            t_copy2 = raw_copy(stack.main, path, 1)
            stack.log(f"raw COPY #2: {t_copy2:.2f} s")
        best = min(t_copy1, t_copy2)
        report.add("keys", size, "keys in the file")
        report.add("rows_added", added, "rows the import added")
        report.add("copy_rows_per_s_best", size / best, "raw COPY (best of 2)", "rows/s")
        report.add("copy_rows_per_s_runs", [round(size / t_copy1), round(size / t_copy2)])
        report.add("import_rows_per_s", added / t_import,
                   "import task (enqueue -> result recorded)", "rows/s")
        ratio = (added / t_import) / (size / best)
        report.add("ratio_import_vs_copy", ratio, "import / COPY", "x")
        report.check("target_ratio", ratio >= 0.7, "target: import >= 0.7 x COPY")
        report.add("worker_idle_rss_mb", idle_rss / 2**20, "bulk worker tree RSS idle", "MB")
        report.add("worker_peak_rss_mb", sampler.peak / 2**20,
                   "bulk worker tree RSS peak (psutil, 50 ms)", "MB")
        report.check("target_rss", sampler.peak <= 200 * 2**20, "target: peak RSS <= 200 MB")
    finally:
        os.unlink(path)
    return report
