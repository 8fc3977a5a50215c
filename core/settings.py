"""Settings: every variable of SPEC.md's configuration table, read once from the
environment and `.env`, validated so that a bad value stops the start with one
line naming it."""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.digits import phone_as_dialled

_TOKEN_RE = re.compile(r"^\d{3,20}:[A-Za-z0-9_-]{10,100}$")

IdList = Annotated[list[int], NoDecode]


def _split_ids(value: object) -> object:
    """Accept `1,2, 3`, a single int, or an empty value for the id-list variables;
    anything else is refused with the one message every id list gives."""
    if isinstance(value, int):
        return [value]
    if isinstance(value, str):
        parts = [p.strip() for p in value.replace(";", ",").split(",")]
        try:
            return [int(p) for p in parts if p]
        except ValueError as exc:
            raise ValueError("must be comma-separated whole numbers, e.g. 123,-100456") from exc
    return value


class DatabaseSettings(BaseSettings):
    """What every process that touches the shared database needs (bot, admin CLI,
    migrations, export), and nothing that needs Telegram."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///trial.db"
    timezone: str = "Asia/Dhaka"
    enrollment_code_days: int = Field(default=14, ge=1, le=365)
    escalate_after_minutes: int = Field(default=30, ge=1, le=24 * 60)
    content_dir: Path | None = None  # the protocol and instrument files; default: content/ in the code

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        """Accept the URL forms hosting platforms hand out, and insist on an async driver."""
        value = value.strip()
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                return "postgresql+asyncpg://" + value[len(prefix) :]
        if value.startswith("sqlite:///"):
            return "sqlite+aiosqlite:///" + value[len("sqlite:///") :]
        if not value.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
            raise ValueError("must be sqlite+aiosqlite:///FILE or postgresql+asyncpg://…")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @cached_property
    def tz(self) -> ZoneInfo:
        """The trial's local time zone."""
        return ZoneInfo(self.timezone)


REQUIRED_HINTS = {
    "TELEGRAM_BOT_TOKEN": "get a token from @BotFather and put TELEGRAM_BOT_TOKEN=<token>",
    "COORDINATOR_CHAT_IDS": "alerts must reach someone: put at least one chat id in COORDINATOR_CHAT_IDS=",
    "ESCALATION_CHAT_IDS": "unacknowledged urgent alerts must reach someone: put at least one chat id in "
    "ESCALATION_CHAT_IDS=",
    "STUDY_CONTACT_PHONE": "urgent advice tells participants to call it: put STUDY_CONTACT_PHONE=+8801…",
}
"""Variables without which the bot must not start, and what to do about each."""


def _required_ids(value: list[int]) -> list[int]:
    if not value:
        raise PydanticCustomError("missing", "is required")
    return value


class CoordinatorSettings(DatabaseSettings):
    """What a process that raises alerts needs: somewhere to send them (the bot,
    and `python -m cli sae`, which queues the alert for the bot to send)."""

    coordinator_chat_ids: IdList

    @field_validator("coordinator_chat_ids", mode="before")
    @classmethod
    def _coordinator_ids(cls, value: object) -> object:
        return _split_ids(value)

    @field_validator("coordinator_chat_ids")
    @classmethod
    def _some_coordinator(cls, value: list[int]) -> list[int]:
        return _required_ids(value)


class TokenSettings(DatabaseSettings):
    """What talks to the Bot API or keys a secret by the token (the bot, and the
    shell's `enroll` and `unlink`, whose codes are stored keyed with it)."""

    telegram_bot_token: SecretStr
    telegram_api_url: str = "https://api.telegram.org/bot"

    @field_validator("telegram_bot_token")
    @classmethod
    def _token_shape(cls, value: SecretStr) -> SecretStr:
        if not _TOKEN_RE.match(value.get_secret_value().strip()):
            raise ValueError("does not look like a bot token (digits:letters, from @BotFather)")
        return SecretStr(value.get_secret_value().strip())

    @field_validator("telegram_api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value


class Settings(CoordinatorSettings, TokenSettings):
    """Everything the running bot needs. The token is a secret: it never appears in
    a repr, a log line or an error message. The bot does not start without
    people to reach: coordinator and escalation chats and the study phone."""

    admin_user_ids: IdList = Field(default_factory=list)
    escalation_chat_ids: IdList
    audit_head_chat_ids: IdList | None = None
    """Where the audit chain's head is published each day (bot.audit_publish); unset:
    the coordinator chats."""
    study_contact_phone: str
    webhook_url: str | None = None
    webhook_listen: str = "0.0.0.0"
    webhook_port: int = Field(default=8443, ge=1, le=65535)
    webhook_secret: SecretStr | None = Field(default=None, validate_default=True)
    """Required in webhook mode: without it anyone who can reach the port could post
    updates as any user (ids are not secret). Several processes share it through the
    environment."""
    heartbeat_seconds: float = Field(default=30, ge=1, le=3600)
    reminder_lease_seconds: float = Field(default=300, ge=1, le=3600)
    """How long a claimed batch of reminders belongs to the process that claimed it; if
    that process dies mid-send, another takes the rows over when this runs out."""
    dispatch_concurrency: int = Field(default=0, ge=0, le=64)
    """Reminders in flight at once; a crash may repeat up to this many (see bot.dispatch).
    0 (the default): as many as the measured round trip needs to keep up with
    TELEGRAM_SEND_RATE, one on a nearby server at the free 30 a second
    (``bot.dispatch.auto_slots``)."""
    telegram_send_rate: int = Field(default=30, ge=1, le=1000)
    """Messages a second the bot may send to different chats. 30 is Telegram's free
    limit; above it the reminders go as Telegram's paid broadcasts (``allow_paid_broadcast``,
    up to 1,000 a second, a small fee in Stars from the bot's balance for each): a service
    with thousands of reminders in one minute. The rate limiter lets that many paid
    broadcasts a second through (ordinary messages keep the free 30), and
    DISPATCH_CONCURRENCY=0 opens the slots it takes. At 30 or less it caps every message."""
    alert_lease_seconds: float = Field(default=120, ge=1, le=3600)
    """The same for one alert delivery (shorter: a safety alert must not wait long)."""
    weekly_overview: bool = True
    """The trial-at-a-glance picture to the coordinator chats on Sundays at 08:00 (off: /overview only)."""

    @field_validator("admin_user_ids", "escalation_chat_ids", "audit_head_chat_ids", mode="before")
    @classmethod
    def _ids(cls, value: object) -> object:
        return _split_ids(value)

    @field_validator("escalation_chat_ids")
    @classmethod
    def _some_escalation(cls, value: list[int]) -> list[int]:
        return _required_ids(value)

    @field_validator("study_contact_phone")
    @classmethod
    def _phone(cls, value: str) -> str:
        """Required, and stored as dialled ("+8801711000000"): Telegram links only that form."""
        value = value.strip()
        if not value:
            raise PydanticCustomError("missing", "is required")
        if not re.fullmatch(r"\+?[0-9০-৯ ().-]+", value) or sum(ch.isdigit() for ch in value) < 6:
            raise ValueError("does not look like a phone number (digits, spaces, - and a leading +)")
        return phone_as_dialled(value)

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        if not value.startswith("https://") and not value.startswith("http://127.0.0.1"):
            raise ValueError("must be an https:// URL that Telegram can reach")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            if info.data.get("webhook_url"):
                raise ValueError("is required when WEBHOOK_URL is set (webhook mode); see .env.example")
            return None
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", value.get_secret_value()):
            raise ValueError("may only contain A-Z, a-z, 0-9, _ and - (Telegram's rule)")
        return value

    @property
    def base_file_url(self) -> str:
        """The file URL that goes with `telegram_api_url` (…/bot → …/file/bot)."""
        url = self.telegram_api_url
        if url.endswith("/bot"):
            return url[: -len("/bot")] + "/file/bot"
        return url.rstrip("/") + "/file/bot"


def describe_error(error: ValidationError) -> str:
    """One clear line naming the first bad variable, without echoing its value
    (it might be the token)."""
    errors = sorted(error.errors(), key=lambda e: 0 if e["loc"] and e["loc"][0] == "telegram_bot_token" else 1)
    first = errors[0]
    name = str(first["loc"][0]).upper() if first["loc"] else "settings"
    if first["type"] == "missing":
        hint = REQUIRED_HINTS.get(name)
        if hint is None:
            return f"Configuration error: {name} is required."
        return f"Configuration error: {name} is not set; {hint} in the environment or in .env (see .env.example)."
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"Configuration error: {name} {message}."
