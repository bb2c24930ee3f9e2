"""Alembic environment for the main database."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from migrations.env_common import run  # noqa: E402

run("main")
