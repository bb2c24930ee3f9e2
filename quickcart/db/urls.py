"""Where the databases and Redis are: explicit URLs, local servers, or embedded ones."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from quickcart.config import get_settings

if TYPE_CHECKING:
    from quickcart.embedded import ServiceUrls


@lru_cache(maxsize=1)
def service_urls() -> ServiceUrls:
    """Resolve (and if needed start) the services once per process."""
    from quickcart.embedded import resolve_service_urls

    return resolve_service_urls(get_settings())
