"""QuickCart settings: one pydantic-settings object read from the environment and `.env`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Where a component finds each secret it cannot start without; the values are env var names.
COMPONENT_SECRETS: dict[str, tuple[str, ...]] = {
    "bot": ("TELEGRAM_BOT_TOKEN",),
    "notify": ("TELEGRAM_BOT_TOKEN",),
    "payments": ("PAKASIR_PROJECT", "PAKASIR_API_KEY"),
    "api": ("PAKASIR_PROJECT",),
    "flower": ("FLOWER_USER", "FLOWER_PASSWORD"),
}


class MissingSettingError(RuntimeError):
    """A component was started without a variable it needs; the message is one line."""


class Settings(BaseSettings):
    """Every knob QuickCart reads. Unset URLs are resolved to local or embedded services."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    database_url: str | None = None
    audit_database_url: str | None = None
    redis_url: str | None = None
    broker_url: str | None = None
    # Starts every Redis key the shop writes (its own and Celery's), so the shop can share a
    # Redis database with other apps, or with a second shop under another prefix.
    redis_key_prefix: str = "qc:"

    telegram_bot_token: str | None = None
    telegram_api_base_url: str = "https://api.telegram.org"
    telegram_webhook_secret: str | None = None
    # Bot API send limits, shared by every notify worker through Redis (Telegram publishes no
    # exact figures; these are the commonly used ones). A send waits in its worker at most
    # `telegram_send_max_wait_seconds`; a longer wait goes back to the queue as a retry.
    telegram_rate_per_second: int = 30
    telegram_rate_per_chat_per_second: int = 1
    telegram_rate_per_group_per_minute: int = 20
    telegram_send_max_wait_seconds: float = 2.0

    pakasir_base_url: str = "https://app.pakasir.com"
    pakasir_project: str | None = None
    pakasir_api_key: str | None = None
    pakasir_timeout_seconds: float = 10.0

    admin_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    admin_group_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)

    # Pending QRIS rows older than this are asked about at the gateway (lost webhooks).
    reconcile_after_seconds: int = 60
    # A shopper's order or deposit intent with no outcome after this long is sent again, same
    # key (quickcart.adapters.intent_journal): well under the broker's visibility timeout.
    intent_resend_after_seconds: int = 60

    store_name: str = "QuickCart"
    # The welcome message's "Dokumentasi: Baca Disini" link (omitted when unset).
    documentation_url: str | None = None
    default_language: str = "id"
    order_expiry_minutes: int = 10
    # Admins get one sales summary per this many seconds (orders paid, created, expired).
    admin_digest_seconds: int = 60
    voucher_cooldown_minutes: int = 5

    data_dir: Path = Path(".quickcart")
    local_pg_host: str = "127.0.0.1"
    local_pg_port: int = 5432
    local_redis_port: int = 6379
    main_db_name: str = "quickcart"
    audit_db_name: str = "quickcart_audit"

    # Must exceed every task's time limit; tests shorten it to see crashed tasks come back.
    celery_visibility_timeout: int = 900
    celery_task_time_limit: int = 600
    # How often a worker looks for messages whose consumer died (after the visibility timeout).
    celery_restore_interval: int = 30

    flower_user: str | None = None
    flower_password: str | None = None
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    log_level: str = "INFO"
    log_json: bool = True

    @field_validator("database_url", "audit_database_url", mode="before")
    @classmethod
    def _postgres_url(cls, value: object) -> object:
        """Accept every PostgreSQL tool's spelling (`postgresql://`, `postgres://`)."""
        if isinstance(value, str) and value.strip():
            return normalize_database_url(value.strip())
        return None if isinstance(value, str) else value

    @field_validator("admin_ids", "admin_group_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        """Accept `1,2,3` (the .env form) as well as a list."""
        if isinstance(value, str):
            return [int(part) for part in value.replace(";", ",").split(",") if part.strip()]
        if isinstance(value, int):
            return [value]
        return value

    def require(self, component: str) -> None:
        """Stop `component` at start with a one-line message if a secret it needs is unset."""
        for env_name in COMPONENT_SECRETS.get(component, ()):
            if not getattr(self, env_name.lower()):
                raise MissingSettingError(
                    f"quickcart {component}: {env_name} is not set "
                    f"(put it in the environment or in .env; see .env.example)"
                )

    @property
    def effective_broker_url(self) -> str | None:
        """The Celery broker: BROKER_URL, else REDIS_URL."""
        return self.broker_url or self.redis_url


# The driver the project ships (psycopg2). SQLAlchemy maps a bare `postgresql://` to psycopg 3,
# which is not installed, and does not know the `postgres://` alias hosting platforms hand out.
_PG_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg2://")
PG_URL_EXAMPLE = "postgresql://user:password@host:5432/dbname"


def normalize_database_url(url: str) -> str:
    """`postgres://…` and `postgresql://…` as `postgresql+psycopg2://…`; anything that is not
    a PostgreSQL URL with a host and a database is refused with one line saying why."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    scheme = url.split("://", 1)[0].lower() + "://" if "://" in url else ""
    if scheme not in _PG_SCHEMES:
        raise ValueError(f"not a PostgreSQL URL (expected {PG_URL_EXAMPLE})")
    normalized = "postgresql+psycopg2://" + url.split("://", 1)[1]
    try:
        parsed = make_url(normalized)
    except (ArgumentError, ValueError):
        raise ValueError(f"cannot be parsed (expected {PG_URL_EXAMPLE})") from None
    if not parsed.database or not (parsed.host or parsed.query.get("host")):
        raise ValueError(f"needs a host and a database name (expected {PG_URL_EXAMPLE})")
    return normalized


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
