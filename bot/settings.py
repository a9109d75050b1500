"""The one Settings object: built in main() (or by a test) and passed down. Nothing else reads os.environ."""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from services.roles import RoleMap, parse_roles

OFFICIAL_TELEGRAM_API = "https://api.telegram.org"


class SettingsError(Exception):
    """A configuration value is wrong; the message names the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ALERTPILOT_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    database_url: str = "sqlite+aiosqlite:///./data/alertpilot.db"
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    ingest_token: SecretStr | None = None

    telegram_token: SecretStr | None = None
    telegram_chat_id: int | None = None
    telegram_api_base: str = OFFICIAL_TELEGRAM_API
    telegram_polling_timeout: int = Field(default=25, ge=1, le=60)

    roles: str = ""
    timezone: str = "Asia/Taipei"
    log_format: Literal["console", "json"] = "console"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    # Outbox pacing (Telegram's published limits; lower them, never raise them, in production).
    chat_rate_per_second: float = Field(default=1.0, gt=0)
    group_rate_per_minute: float = Field(default=20.0, gt=0)
    bot_rate_per_second: float = Field(default=30.0, gt=0)
    outbox_max_backoff_seconds: float = Field(default=300.0, gt=0)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Asia/Taipei)") from exc
        return value

    @field_validator("roles")
    @classmethod
    def _valid_roles(cls, value: str) -> str:
        parse_roles(value)  # raises ValueError with the offending entry
        return value

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @field_validator("telegram_api_base")
    @classmethod
    def _http_base(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @field_validator("telegram_token", "ingest_token", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("telegram_chat_id", mode="before")
    @classmethod
    def _blank_chat_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def database_url_display(self) -> str:
        """The database URL without its password, for banners and error messages."""
        return make_url(self.database_url).render_as_string(hide_password=True)

    @property
    def role_map(self) -> RoleMap:
        return parse_roles(self.roles)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def telegram_enabled(self) -> bool:
        return self.telegram_token is not None


def load_settings(**overrides: object) -> Settings:
    """Build Settings from the environment (and .env); turn validation errors into one readable message."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            lines.append(f"ALERTPILOT_{field.upper()}: {err['msg']}")
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(lines)) from exc
