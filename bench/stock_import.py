"""`import`: a million keys through the bulk-import task vs a raw COPY of the same file."""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from dataclasses import astuple, dataclass

import psutil

from bench.common import Report
from bench.harness import Proc, Stack, wait_until
from bench.import_probe import empty, raw_copy, write_keys


@dataclass
class Memory:
    """One sample of a worker tree: RSS of the tree, of its main process and of its largest
    pool child (the process that runs the import), and the tree's PSS (shared pages split
    between the processes sharing them, so a page the fork shares counts once)."""

    tree_rss: int = 0
    main_rss: int = 0
    child_rss: int = 0
    tree_pss: int = 0

    @classmethod
    def of(cls, proc: Proc) -> Memory:
        try:
            root = psutil.Process(proc.pid)
            children = root.children(recursive=True)
        except psutil.Error:
            return cls()
        sample = cls()
        for each in [root, *children]:
            with contextlib.suppress(psutil.Error):
                info = each.memory_full_info()
                sample.tree_rss += info.rss
                sample.tree_pss += info.pss
                if each is root:
                    sample.main_rss = info.rss
                else:
                    sample.child_rss = max(sample.child_rss, info.rss)
        return sample

    def peak(self, other: Memory) -> Memory:
        return Memory(*(max(a, b) for a, b in zip(astuple(self), astuple(other), strict=True)))


class PeakRss:
    """Samples a process tree's memory every `interval` seconds in a thread; keeps each peak."""

    def __init__(self, proc: Proc, interval: float = 0.05) -> None:
        self.proc = proc
        self.interval = interval
        self.peak = Memory()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = self.peak.peak(Memory.of(self.proc))
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
            idle = Memory.of(worker)

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
        mb = 2**20
        peak = sampler.peak
        report.add("worker_idle_rss_mb", idle.tree_rss / mb, "bulk worker tree RSS idle", "MB")
        report.add("worker_peak_rss_mb", peak.tree_rss / mb,
                   "bulk worker tree RSS peak (psutil, 50 ms)", "MB")
        report.add("worker_idle_pss_mb", idle.tree_pss / mb, "bulk worker tree PSS idle", "MB")
        report.add("worker_peak_pss_mb", peak.tree_pss / mb, "bulk worker tree PSS peak", "MB")
        report.add("worker_main_peak_rss_mb", peak.main_rss / mb,
                   "  main process RSS peak", "MB")
        report.add("worker_child_idle_rss_mb", idle.child_rss / mb,
                   "  pool child (runs the import) RSS idle", "MB")
        report.add("worker_child_peak_rss_mb", peak.child_rss / mb,
                   "  pool child (runs the import) RSS peak", "MB")
        # The budget is checked on the tree's RSS (main process + pool child, pages the fork
        # shares counted in both): the strictest of the figures above.
        report.check("target_rss", peak.tree_rss <= 200 * mb,
                     "target: tree peak RSS <= 200 MB")
    finally:
        os.unlink(path)
    return report
