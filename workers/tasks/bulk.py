"""Bulk queue: stock imports (a million keys), isolated from the payment workers."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

from quickcart.adapters import redis_store
from workers import runtime
from workers.app import app
from workers.base import QuickCartTask


@app.task(base=QuickCartTask, name="quickcart.import_stock",
          time_limit=1800, soft_time_limit=1700)
def import_stock_file(product_id: int, actor_id: int, upload_id: str,
                      path: str | None = None, file_id: str | None = None,
                      chat_id: int | None = None) -> dict[str, Any]:
    """Import a stock file (a local path, or a Telegram file_id fetched by the worker).

    Idempotent per upload: `upload_id` is claimed in the import's own transaction.
    """
    if path is not None:
        return _import(product_id, actor_id, upload_id, Path(path))
    if file_id is None:
        raise ValueError("import_stock_file needs a path or a file_id")
    with tempfile.TemporaryDirectory(prefix="qc-import-") as tmp:
        local = Path(tmp) / "stock.txt"
        runtime.messenger().download_file(file_id, local)
        return _import(product_id, actor_id, upload_id, local)


def _import(product_id: int, actor_id: int, upload_id: str, path: Path) -> dict[str, Any]:
    # Imported here: only bulk workers pay for the import machinery.
    from quickcart.services.stock_import import import_stock

    with path.open("rb") as source:
        result = import_stock(runtime.engine(), product_id, source, upload_id=upload_id,
                              actor_id=actor_id)
    # After the import committed: the product's free-unit count changed (best effort).
    redis_store.invalidate_stock_counts(runtime.redis_client(), [product_id])
    return dataclasses.asdict(result)
