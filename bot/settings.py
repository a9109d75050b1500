"""The one Settings object: built in main() (or by a test) and passed down. Nothing else reads os.environ."""

from __future__ import annotations

import re
from datetime import time
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from bot.chat.wecom import robot_id
from bot.chat.wecom_crypto import WeComCrypto
from services.ai import Budget
from services.consensus import PanelMember, parse_panel
from services.execution import ExecutionConfig
from services.failures import (
    DEFAULT_TITLE,
    NotifyTarget,
    check_title,
    parse_notify_targets,
)
from services.languages import parse_language
from services.policy import RemediationPolicy
from services.ports import ChatTarget
from services.roles import RoleMap, parse_roles
from services.routing import Route
from services.safety import NamespacePolicy
from services.schedule import parse_hhmm

OFFICIAL_TELEGRAM_API = "https://api.telegram.org"


class SettingsError(Exception):
    """A configuration value is wrong; the message names the variable."""


def checked_csv(value: str, pattern: str, problem: str) -> str:
    """A comma-separated list, each item matching ``pattern``; ValueError(problem) names the first bad one."""
    items = [item.strip() for item in value.split(",") if item.strip()]
    bad = [item for item in items if not re.fullmatch(pattern, item)]
    if bad:
        raise ValueError(problem.format(item=repr(bad[0])))
    return ",".join(items)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ALERTPILOT_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    database_url: str = "sqlite+aiosqlite:///./data/alertpilot.db"
    # Run the schema migrations at start-up (unset: yes on SQLite; on PostgreSQL run `alertpilot db upgrade`
    # once per release, or set true: replicas starting together migrate once, under a lock).
    auto_migrate: bool | None = None
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    ingest_token: SecretStr | None = None

    telegram_token: SecretStr | None = None
    telegram_chat_id: int | None = None
    telegram_api_base: str = OFFICIAL_TELEGRAM_API
    telegram_polling_timeout: int = Field(default=25, ge=1, le=60)
    # polling (one process at a time, held by a database lease) or webhook (any number of replicas: Telegram
    # posts updates to ALERTPILOT_TELEGRAM_WEBHOOK_URL, which must reach POST /telegram/webhook on this app)
    telegram_mode: Literal["polling", "webhook"] = "polling"
    telegram_webhook_url: str | None = None
    telegram_webhook_secret: SecretStr | None = None
    # SIGTERM: stop taking work, then this long at most to finish what is in progress and send what is due
    shutdown_grace_seconds: float = Field(default=20.0, ge=0, le=600)

    # WeCom group robots (send-only): one or more webhook keys; the on-call people @mentioned on new cards.
    wecom_webhook_keys: str = ""
    wecom_api_base: str = "https://qyapi.weixin.qq.com"
    wecom_oncall: str = ""
    wecom_rate_per_minute: float = Field(default=20.0, gt=0, le=20)
    # The WeCom 智能机器人 (AI bot) callback at /wecom/callback: its Token and EncodingAESKey (both, or none).
    wecom_bot_token: SecretStr | None = None
    wecom_bot_aes_key: SecretStr | None = None

    # The AI model: any OpenAI-compatible chat-completions server (OpenAI, vLLM, Ollama /v1, llama.cpp).
    ai_base_url: str | None = None
    ai_api_key: SecretStr | None = None
    ai_model: str | None = None
    ai_timeout_seconds: float = Field(default=20.0, gt=0, le=600)
    decision_sla_seconds: float = Field(default=30.0, gt=0, le=3600)
    playbooks_file: str | None = None
    # Deep analysis (services/investigation.py): read-only tool calls the AI model may make before it proposes
    ai_max_tool_calls: int = Field(default=6, ge=0, le=20)  # 0: no tools (the single-shot prompt)
    ai_token_budget: int = Field(default=20000, ge=0, le=2_000_000)  # tokens per analysis (0: no limit)
    ai_time_budget_seconds: float = Field(default=20.0, gt=0, le=3600)  # investigating, then answer (≤ the SLA)
    # Consensus (services/consensus.py): for these severities, several analyses vote (model, model*3, model@url)
    consensus_severities: str = "critical,P0,P1"
    consensus_models: str = ""
    prometheus_url: str | None = None  # the PromQL tools, e.g. http://prometheus:9090
    alertmanager_url: str | None = None  # the active alerts and silences tools, e.g. http://alertmanager:9093
    # Alert sources beside the default (ALERTPILOT_INGEST_TOKEN): JSON here, or a YAML file (services/sources/credentials.py)
    sources: SecretStr | None = None
    sources_file: str | None = None

    # The remediation policy (services/safety.py): which tools may run, which namespaces weigh more, auto mode.
    allowed_tools: str = "kubectl"
    prod_namespaces: str = "prod,production,*-prod"
    auto_remediation: bool = False
    auto_min_confidence: float = Field(default=0.65, ge=0, le=1)
    approval_ttl_minutes: int = Field(default=60, ge=1, le=10080)
    # GitOps review issues for the two-approver tier (all four, or none).
    gitops_provider: Literal["gitea", "github"] | None = None
    gitops_url: str | None = None
    gitops_token: SecretStr | None = None
    gitops_repo: str | None = None

    # Execution (services/execution.py): dry-run records what would run; kubectl runs it (never a shell).
    executor: Literal["dry-run", "kubectl"] = "dry-run"
    kubectl: str = "kubectl"
    kubeconfig: str | None = None
    kube_context: str | None = None
    exec_timeout_seconds: float = Field(default=120.0, gt=0, le=3600)
    max_retries: int = Field(default=2, ge=0, le=10)
    retry_delay_seconds: float = Field(default=30.0, ge=0, le=3600)
    verify_timeout_seconds: int = Field(default=120, ge=1, le=3600)
    # One failure analysis after a remediation finally failed: tg:<id>, wecom:<userid>; unset: the card chats.
    failure_notify: str = ""
    failure_notify_enabled: bool = True
    failure_notify_title: str = DEFAULT_TITLE

    # Scheduled work (bot/scheduler.py): the daily KPI report (Mondays also the weekly digest) at this local
    # time, to the report chats (tg:<chat id>, wecom:<robot key>; unset: the card chats).
    daily_report_time: str = "08:00"
    report_chats: str = ""
    # Incident routing (services/routing.py): "team=payments -> tg:-100123, wecom:<key>; env=staging -> tg:-100999"
    routes: str = ""
    report_grace_minutes: int = Field(default=360, ge=0, le=1440)  # a missed report is sent this late at most
    weekly_digest: bool = True
    postmortem_min_minutes: int = Field(default=10, ge=0, le=10080)
    approval_reminder_minutes: int = Field(default=15, ge=0, le=1440)  # 0: no reminders

    roles: str = ""
    # The language of every message (en, zh-CN, zh-TW); an admin may give a chat its own with /lang.
    language: str = "en"
    timezone: str = "Asia/Taipei"
    log_format: Literal["console", "json"] = "console"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    # Outbox pacing (Telegram's published limits; lower them, never raise them, in production).
    chat_rate_per_second: float = Field(default=1.0, gt=0)
    group_rate_per_minute: float = Field(default=20.0, gt=0)
    bot_rate_per_second: float = Field(default=30.0, gt=0)
    outbox_max_backoff_seconds: float = Field(default=300.0, gt=0)

    @field_validator("wecom_webhook_keys")
    @classmethod
    def _valid_wecom_keys(cls, value: str) -> str:
        checked = checked_csv(value, r"[A-Za-z0-9-]{8,128}(@[A-Za-z_-]{2,12})?",
                              "not a webhook key: {item} (give the key=… part of each robot's webhook URL, "
                              "comma-separated, each optionally with its group's language: key@zh-CN)")
        items = []
        for item in (i for i in checked.split(",") if i):
            key, _, lang = item.partition("@")
            if lang and parse_language(lang) is None:
                raise ValueError(f"not a language alertpilot speaks: {lang!r} after robot key {key[:4]}… "
                                 "(en, zh-CN or zh-TW)")
            items.append(f"{key}@{parse_language(lang)}" if lang else key)
        return ",".join(items)

    @field_validator("wecom_oncall")
    @classmethod
    def _valid_oncall(cls, value: str) -> str:
        return checked_csv(value, r"[A-Za-z0-9_.@-]{1,64}", "not a WeCom userid: {item} (comma-separated userids, or @all)")

    @field_validator("failure_notify")
    @classmethod
    def _valid_notify_targets(cls, value: str) -> str:
        parse_notify_targets(value)  # raises ValueError naming the bad entry
        return value

    @field_validator("failure_notify_title")
    @classmethod
    def _valid_notify_title(cls, value: str) -> str:
        return check_title(value)

    @field_validator("daily_report_time")
    @classmethod
    def _valid_report_time(cls, value: str) -> str:
        parse_hhmm(value)  # raises ValueError saying what is expected
        return value.strip()

    @field_validator("report_chats")
    @classmethod
    def _valid_report_chats(cls, value: str) -> str:
        return checked_csv(value, r"(tg:-?\d{1,20}|wecom:[A-Za-z0-9-]{8,128})",
                           "not a report chat: {item} (use tg:<chat id> or wecom:<robot webhook key>, comma-separated)")

    @field_validator("kubectl")
    @classmethod
    def _kubectl(cls, value: str) -> str:
        if not value.strip() or "\x00" in value:
            raise ValueError("must name the kubectl executable (on PATH) or its absolute path")
        return value.strip()

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

    @field_validator("telegram_api_base", "wecom_api_base")
    @classmethod
    def _http_base(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @field_validator("prod_namespaces")
    @classmethod
    def _valid_namespaces(cls, value: str) -> str:
        NamespacePolicy.parse(value)  # raises ValueError naming the bad entry
        return value

    @field_validator("allowed_tools")
    @classmethod
    def _valid_tools(cls, value: str) -> str:
        return checked_csv(
            value, r"[A-Za-z0-9_.+-]{1,64}", "not a tool name: {item} (comma-separated executable names, e.g. kubectl,helm)"
        )

    @field_validator("ai_base_url")
    @classmethod
    def _ai_base(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL such as http://127.0.0.1:11434/v1")
        return value.rstrip("/")

    @field_validator("language")
    @classmethod
    def _language(cls, value: str) -> str:
        lang = parse_language(value)
        if lang is None:
            raise ValueError(f"not a language alertpilot speaks: {value!r} (en, zh-CN or zh-TW)")
        return lang

    @field_validator("consensus_models")
    @classmethod
    def _panel(cls, value: str) -> str:
        parse_panel(value)  # raises ValueError saying what is wrong
        return value

    @field_validator("consensus_severities")
    @classmethod
    def _severities(cls, value: str) -> str:
        return checked_csv(value, r"[A-Za-z0-9_.-]{1,32}", "not a severity: {item} (comma-separated, e.g. critical,P0,P1)")

    @field_validator("prometheus_url", "alertmanager_url")
    @classmethod
    def _upstream_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL such as http://prometheus:9090")
        return None if value is None else value.rstrip("/")

    @field_validator("gitops_url")
    @classmethod
    def _gitops_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL: https://api.github.com, https://gitea.example.com")
        return None if value is None else value.rstrip("/")

    @field_validator("gitops_repo")
    @classmethod
    def _gitops_repo(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", value):
            raise ValueError("must be owner/name")
        return value

    @field_validator("wecom_bot_aes_key")
    @classmethod
    def _valid_aes_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            WeComCrypto("check", value.get_secret_value())  # raises ValueError saying what is wrong
        return value

    @field_validator("telegram_token", "ingest_token", "ai_api_key", "gitops_token", "wecom_bot_token",
                     "wecom_bot_aes_key", "sources", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator(
        "telegram_chat_id", "ai_base_url", "ai_model", "playbooks_file", "sources_file", "prometheus_url",
        "alertmanager_url", "gitops_provider", "gitops_url",
        "gitops_repo",
        "kubeconfig", "kube_context", mode="before",
    )
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def migrate_at_start(self) -> bool:
        if self.auto_migrate is not None:
            return self.auto_migrate
        return make_url(self.database_url).get_backend_name() == "sqlite"

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

    @property
    def remediation_policy(self) -> RemediationPolicy:
        return RemediationPolicy(
            namespaces=NamespacePolicy.parse(self.prod_namespaces),
            allowed_tools=frozenset(t for t in self.allowed_tools.split(",") if t),
            auto_enabled=self.auto_remediation,
            min_confidence=self.auto_min_confidence,
        )

    @property
    def ai_enabled(self) -> bool:
        return self.ai_base_url is not None and self.ai_model is not None

    @property
    def consensus_panel(self) -> tuple[PanelMember, ...]:
        return parse_panel(self.consensus_models)

    @property
    def consensus_severity_set(self) -> frozenset[str]:
        return frozenset(s.lower() for s in self.consensus_severities.split(",") if s)

    @property
    def ai_budget(self) -> Budget:
        """What one analysis may spend: the token budget (0: none) and the time budget, never past the SLA."""
        return Budget(tokens=self.ai_token_budget or None,
                      seconds=min(self.ai_time_budget_seconds, self.decision_sla_seconds))

    @property
    def wecom_keys(self) -> tuple[str, ...]:
        return tuple(k.partition("@")[0] for k in self.wecom_webhook_keys.split(",") if k)

    @property
    def wecom_key_languages(self) -> dict[str, str]:
        """The robots given their own language (``key@zh-CN``): key → language."""
        return {key: lang for key, _, lang in (k.partition("@") for k in self.wecom_webhook_keys.split(",")) if lang}

    @property
    def wecom_oncall_ids(self) -> tuple[str, ...]:
        return tuple(p for p in self.wecom_oncall.split(",") if p)

    @property
    def execution_config(self) -> ExecutionConfig:
        return ExecutionConfig(
            timeout_seconds=self.exec_timeout_seconds,
            max_retries=self.max_retries,
            retry_delay_seconds=self.retry_delay_seconds,
            verify_timeout_seconds=self.verify_timeout_seconds,
        )

    @property
    def failure_notify_targets(self) -> list[NotifyTarget]:
        return parse_notify_targets(self.failure_notify)

    @property
    def gitops_enabled(self) -> bool:
        return self.gitops_provider is not None

    @model_validator(mode="after")
    def _gitops_complete(self) -> Settings:
        values = {
            "ALERTPILOT_GITOPS_PROVIDER": self.gitops_provider, "ALERTPILOT_GITOPS_URL": self.gitops_url,
            "ALERTPILOT_GITOPS_TOKEN": self.gitops_token, "ALERTPILOT_GITOPS_REPO": self.gitops_repo,
        }
        missing = [name for name, value in values.items() if value is None]
        if 0 < len(missing) < len(values):
            raise ValueError(f"GitOps review needs all of {', '.join(values)}; not set: {', '.join(missing)}")
        return self

    @field_validator("telegram_webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parsed = urlsplit(value)
        if parsed.scheme not in ("https", "http") or not parsed.hostname:
            raise ValueError(f"not an https URL: {value[:80]!r} (the public address Telegram posts updates to, "
                             "e.g. https://alertpilot.example.com/telegram/webhook)")
        return value

    @field_validator("telegram_webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", value.get_secret_value()):
            raise ValueError("Telegram accepts 1-256 characters A-Z, a-z, 0-9, _ and - as a webhook secret "
                             "(e.g. the output of `openssl rand -hex 32`)")
        return value

    @model_validator(mode="after")
    def _telegram_webhook_complete(self) -> Settings:
        if self.telegram_mode != "webhook":
            return self
        missing = [name for name, value in (
            ("ALERTPILOT_TELEGRAM_TOKEN", self.telegram_token),
            ("ALERTPILOT_TELEGRAM_WEBHOOK_URL", self.telegram_webhook_url),
            ("ALERTPILOT_TELEGRAM_WEBHOOK_SECRET", self.telegram_webhook_secret),
        ) if value is None]
        if missing:
            raise ValueError(f"ALERTPILOT_TELEGRAM_MODE=webhook needs {', '.join(missing)}")
        if self.telegram_api_base == OFFICIAL_TELEGRAM_API and urlsplit(self.telegram_webhook_url or "").scheme != "https":
            raise ValueError("ALERTPILOT_TELEGRAM_WEBHOOK_URL: Telegram posts only to https URLs (ports 443, 80, 88 "
                             "or 8443); http works only with a local Bot API server (ALERTPILOT_TELEGRAM_API_BASE)")
        return self

    @property
    def telegram_webhook(self) -> bool:
        return self.telegram_token is not None and self.telegram_mode == "webhook"

    @model_validator(mode="after")
    def _wecom_bot_complete(self) -> Settings:
        if (self.wecom_bot_token is None) != (self.wecom_bot_aes_key is None):
            missing = "ALERTPILOT_WECOM_BOT_TOKEN" if self.wecom_bot_token is None else "ALERTPILOT_WECOM_BOT_AES_KEY"
            raise ValueError(f"the WeCom callback needs ALERTPILOT_WECOM_BOT_TOKEN and ALERTPILOT_WECOM_BOT_AES_KEY; "
                             f"{missing} is not set")
        return self

    @property
    def wecom_crypto(self) -> WeComCrypto | None:
        if self.wecom_bot_token is None or self.wecom_bot_aes_key is None:
            return None
        return WeComCrypto(self.wecom_bot_token.get_secret_value(), self.wecom_bot_aes_key.get_secret_value())

    @model_validator(mode="after")
    def _report_chats_known(self) -> Settings:
        for item in (i for i in self.report_chats.split(",") if i):
            self.chat_target(item, "ALERTPILOT_REPORT_CHATS")
        return self

    def chat_target(self, item: str, setting: str) -> ChatTarget:
        """``tg:<chat id>`` or ``wecom:<robot key>`` as a chat; ValueError naming ``setting`` when this
        configuration cannot post there."""
        item = item.strip()
        platform, _, ident = item.partition(":")
        if platform == "tg" and re.fullmatch(r"-?\d{1,20}", ident):
            if self.telegram_token is None:
                raise ValueError(f"{setting}: {item} needs Telegram (set ALERTPILOT_TELEGRAM_TOKEN)")
            return ChatTarget("telegram", ident)
        if platform == "wecom" and ident:
            if ident not in self.wecom_keys:
                raise ValueError(f"{setting}: a wecom: entry must be one of ALERTPILOT_WECOM_WEBHOOK_KEYS")
            return ChatTarget("wecom", robot_id(ident))
        raise ValueError(f"{setting}: not a chat: {item[:40]!r} (tg:<chat id> or wecom:<robot webhook key>)")

    @property
    def report_targets(self) -> list[ChatTarget] | None:
        """The report chats, or None for the default (the card chats)."""
        targets = [self.chat_target(i, "ALERTPILOT_REPORT_CHATS") for i in self.report_chats.split(",") if i]
        return list(dict.fromkeys(targets)) or None

    @model_validator(mode="after")
    def _routes_valid(self) -> Settings:
        self.route_list  # noqa: B018 - raises ValueError naming the bad route
        return self

    @property
    def route_list(self) -> list[Route]:
        """ALERTPILOT_ROUTES: ``[name:] label=value [label=value …] -> chat, chat; …`` (``→`` works too; an
        unnamed route is ``route<n>``)."""
        routes: list[Route] = []
        for number, text in enumerate((r for r in self.routes.split(";") if r.strip()), start=1):
            left, arrow, right = text.replace("→", "->").partition("->")
            where = f"ALERTPILOT_ROUTES: route {number}"
            named = re.match(r"\s*([a-z0-9][a-z0-9_-]{0,39})\s*:\s", left)
            name = named.group(1) if named else f"route{number}"
            left = left[named.end():] if named else left
            if any(r.name == name for r in routes):
                raise ValueError(f"{where}: the name {name!r} is used twice")
            matchers = {}
            for word in left.split():
                label, equals, value = word.partition("=")
                if not equals or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", label) or not value:
                    raise ValueError(f"{where}: {word[:40]!r} is not label=value")
                matchers[label] = value
            if not arrow or not matchers:
                raise ValueError(f"{where}: expected 'label=value … -> tg:<chat id>, wecom:<robot key>'")
            chats = [self.chat_target(c, where) for c in right.split(",") if c.strip()]
            if not chats:
                raise ValueError(f"{where}: no chat after '->'")
            routes.append(Route(matchers, tuple(dict.fromkeys(chats)), name))
        return routes

    @property
    def report_time(self) -> time:
        return parse_hhmm(self.daily_report_time)

    @model_validator(mode="after")
    def _ai_complete(self) -> Settings:
        if (self.ai_base_url is None) != (self.ai_model is None):
            missing = "ALERTPILOT_AI_MODEL" if self.ai_model is None else "ALERTPILOT_AI_BASE_URL"
            raise ValueError(f"the AI model needs both ALERTPILOT_AI_BASE_URL and ALERTPILOT_AI_MODEL; {missing} is not set")
        if self.consensus_models.strip() and not self.ai_enabled:
            raise ValueError("ALERTPILOT_CONSENSUS_MODELS needs the AI model (ALERTPILOT_AI_BASE_URL and ALERTPILOT_AI_MODEL)")
        return self


def load_settings(**overrides: object) -> Settings:
    """Build Settings from the environment (and .env); turn validation errors into one readable message."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            if err["loc"]:
                lines.append(f"ALERTPILOT_{str(err['loc'][0]).upper()}: {str(err['msg']).removeprefix('Value error, ')}")
            else:  # a rule across several variables names them itself
                lines.append(str(err["msg"]).removeprefix("Value error, "))
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(lines)) from exc
