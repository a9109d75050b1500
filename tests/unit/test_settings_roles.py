"""services/roles.py parse_roles / RoleMap and bot/settings.py load_settings (environment → Settings)."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.app import Banner, banner_text, serve
from bot.settings import OFFICIAL_TELEGRAM_API, SettingsError, load_settings
from services.roles import Role, RoleMap, parse_roles

# --- parse_roles ----------------------------------------------------------------------------------


def test_roles_parse_commas_and_semicolons() -> None:
    roles = parse_roles("tg:111=approver, tg:222=operator;wecom:alice=admin")
    assert roles.roles == {"tg:111": Role.APPROVER, "tg:222": Role.OPERATOR, "wecom:alice": Role.ADMIN}


def test_roles_parse_tolerates_whitespace_and_case() -> None:
    roles = parse_roles("  tg:111 = Approver ,\n tg:222=OPERATOR ;; , wecom:bob= viewer ,")
    assert roles.roles == {"tg:111": Role.APPROVER, "tg:222": Role.OPERATOR, "wecom:bob": Role.VIEWER}


@pytest.mark.parametrize("text", ["", "   ", ",;,", "\n"])
def test_roles_parse_empty_is_no_roles(text: str) -> None:
    assert parse_roles(text) == RoleMap()


def test_roles_parse_negative_telegram_id_and_last_entry_wins() -> None:
    roles = parse_roles("tg:-100=viewer,tg:5=viewer,tg:5=admin")
    assert roles.role_of("tg:-100") is Role.VIEWER
    assert roles.role_of("tg:5") is Role.ADMIN


@pytest.mark.parametrize(
    ("text", "culprit"),
    [
        ("tg:abc=approver", "tg:abc=approver"),
        ("tg:1=boss", "tg:1=boss"),
        ("111=approver", "111=approver"),
        ("tg:1", "tg:1"),
        ("tg:=approver", "tg:=approver"),
        ("slack:u1=admin", "slack:u1=admin"),
        ("tg:1=", "tg:1="),
        ("tg:1=none", "tg:1=none"),
        ("tg:111=approver,tg:2=boss", "tg:2=boss"),
    ],
)
def test_roles_parse_errors_name_the_entry(text: str, culprit: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_roles(text)
    assert repr(culprit) in str(caught.value)


def test_roles_parse_space_separated_entries() -> None:
    assert parse_roles("tg:1=viewer tg:2=admin").roles == {"tg:1": Role.VIEWER, "tg:2": Role.ADMIN}


def test_roles_allows_ordering() -> None:
    roles = parse_roles("tg:1=viewer,tg:2=operator,tg:3=approver,tg:4=admin")
    order = [Role.VIEWER, Role.OPERATOR, Role.APPROVER, Role.ADMIN]
    assert Role.VIEWER < Role.OPERATOR < Role.APPROVER < Role.ADMIN
    for held, actor in zip(order, ["tg:1", "tg:2", "tg:3", "tg:4"], strict=True):
        for needed in order:
            assert roles.allows(actor, needed) is (held >= needed), (actor, needed)


def test_roles_unknown_actor_has_no_role() -> None:
    roles = parse_roles("tg:1=admin")
    assert roles.role_of("tg:2") is Role.NONE
    assert roles.role_of("wecom:1") is Role.NONE  # platforms do not share ids
    assert not roles.allows("tg:2", Role.VIEWER)
    assert roles.allows("tg:2", Role.NONE)


# --- load_settings --------------------------------------------------------------------------------


def test_settings_defaults(tmp_path: Path) -> None:
    settings = load_settings()
    assert settings.database_url == "sqlite+aiosqlite:///./data/alertpilot.db"
    assert settings.http_port == 8080
    assert settings.http_host == "127.0.0.1"
    assert settings.timezone == "Asia/Taipei"
    assert settings.tz == ZoneInfo("Asia/Taipei")
    assert settings.telegram_token is None
    assert settings.telegram_enabled is False
    assert settings.telegram_api_base == OFFICIAL_TELEGRAM_API
    assert settings.log_format == "console"
    assert settings.role_map == RoleMap()
    assert settings.chat_rate_per_second == 1.0
    assert settings.group_rate_per_minute == 20.0
    assert Path.cwd() == tmp_path  # conftest isolates us from a developer's .env


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ALERTPILOT_HTTP_PORT", "notaport"),
        ("ALERTPILOT_HTTP_PORT", "70000"),
        ("ALERTPILOT_TIMEZONE", "Mars/Base"),
        ("ALERTPILOT_ROLES", "tg:1=boss"),
        ("ALERTPILOT_ROLES", "tg:abc=approver"),
        ("ALERTPILOT_DATABASE_URL", "mysql://x"),
        ("ALERTPILOT_LOG_FORMAT", "xml"),
        ("ALERTPILOT_LOG_LEVEL", "verbose"),
        ("ALERTPILOT_TELEGRAM_API_BASE", "ftp://x"),
        ("ALERTPILOT_CHAT_RATE_PER_SECOND", "0"),
        ("ALERTPILOT_AI_BASE_URL", "ftp://models"),
        ("ALERTPILOT_AI_TIMEOUT_SECONDS", "0"),
        ("ALERTPILOT_DECISION_SLA_SECONDS", "-1"),
    ],
)
def test_settings_error_names_the_variable(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert f"{variable}:" in str(caught.value)


def test_settings_error_lists_every_bad_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERTPILOT_HTTP_PORT", "notaport")
    monkeypatch.setenv("ALERTPILOT_TIMEZONE", "Mars/Base")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "ALERTPILOT_HTTP_PORT" in message and "ALERTPILOT_TIMEZONE" in message
    assert "Mars/Base" in message


def test_settings_roles_message_names_the_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERTPILOT_ROLES", "tg:111=approver,tg:2=boss")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "ALERTPILOT_ROLES" in str(caught.value)
    assert "tg:2=boss" in str(caught.value)


def test_settings_values_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERTPILOT_HTTP_PORT", "9099")
    monkeypatch.setenv("ALERTPILOT_TIMEZONE", "Europe/Berlin")
    monkeypatch.setenv("ALERTPILOT_ROLES", "tg:111=approver")
    monkeypatch.setenv("ALERTPILOT_DATABASE_URL", "postgresql+asyncpg://u:p@db/alertpilot")
    monkeypatch.setenv("ALERTPILOT_TELEGRAM_TOKEN", "123:ABC")
    monkeypatch.setenv("ALERTPILOT_TELEGRAM_API_BASE", "http://127.0.0.1:8081/")
    monkeypatch.setenv("ALERTPILOT_LOG_FORMAT", "json")
    settings = load_settings()
    assert settings.http_port == 9099
    assert settings.tz == ZoneInfo("Europe/Berlin")
    assert settings.role_map.allows("tg:111", Role.APPROVER)
    assert settings.database_url.startswith("postgresql+asyncpg://")
    assert settings.telegram_token is not None and settings.telegram_token.get_secret_value() == "123:ABC"
    assert settings.telegram_enabled
    assert settings.telegram_api_base == "http://127.0.0.1:8081"
    assert settings.log_format == "json"
    assert "123:ABC" not in repr(settings)  # the token is a secret


@pytest.mark.parametrize("blank", ["", "   "])
def test_settings_blank_telegram_token_means_unset(monkeypatch: pytest.MonkeyPatch, blank: str) -> None:
    monkeypatch.setenv("ALERTPILOT_TELEGRAM_TOKEN", blank)
    monkeypatch.setenv("ALERTPILOT_TELEGRAM_CHAT_ID", blank)
    monkeypatch.setenv("ALERTPILOT_INGEST_TOKEN", blank)
    settings = load_settings()
    assert settings.telegram_token is None
    assert settings.telegram_chat_id is None
    assert settings.ingest_token is None
    assert settings.telegram_enabled is False


def test_settings_overrides_beat_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERTPILOT_HTTP_PORT", "9099")
    assert load_settings(http_port=0).http_port == 0


def test_settings_read_dot_env_in_working_directory(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("ALERTPILOT_HTTP_PORT=7070\nALERTPILOT_TIMEZONE=UTC\n")
    settings = load_settings()
    assert settings.http_port == 7070
    assert settings.timezone == "UTC"


def test_settings_environment_beats_dot_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("ALERTPILOT_HTTP_PORT=7070\n")
    monkeypatch.setenv("ALERTPILOT_HTTP_PORT", "6060")
    assert load_settings().http_port == 6060


def test_settings_ai_defaults_and_values(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.ai_enabled is False and settings.ai_timeout_seconds == 20 and settings.decision_sla_seconds == 30
    assert settings.playbooks_file is None
    monkeypatch.setenv("ALERTPILOT_AI_BASE_URL", "http://127.0.0.1:11434/v1/")
    monkeypatch.setenv("ALERTPILOT_AI_MODEL", "llama3.1:8b")
    monkeypatch.setenv("ALERTPILOT_AI_API_KEY", " ")
    settings = load_settings()
    assert settings.ai_enabled and settings.ai_base_url == "http://127.0.0.1:11434/v1"
    assert settings.ai_api_key is None  # blank means unset


@pytest.mark.parametrize("variable", ["ALERTPILOT_AI_BASE_URL", "ALERTPILOT_AI_MODEL"])
def test_settings_ai_needs_both_url_and_model(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, "http://127.0.0.1:8000/v1")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "ALERTPILOT_AI_BASE_URL and ALERTPILOT_AI_MODEL" in message
    missing = "ALERTPILOT_AI_MODEL" if variable == "ALERTPILOT_AI_BASE_URL" else "ALERTPILOT_AI_BASE_URL"
    assert f"{missing} is not set" in message


async def test_serve_refuses_a_bad_playbooks_file_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "playbooks.yaml"
    bad.write_text("playbooks:\n  - name: restart-api\n    symptoms: {alertnames: [X]}\n    steps: []\n")
    settings = load_settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/a.db", playbooks_file=str(bad), http_port=0)
    assert await serve(settings) == 2
    err = capsys.readouterr().err
    assert "ALERTPILOT_PLAYBOOKS_FILE" in err and str(bad) in err and "restart-api" in err and "steps" in err


def test_roles_limited_to_namespaces() -> None:
    roles = parse_roles("tg:1=approver@prod|*-dev tg:2=admin wecom:alice=operator@Staging")
    assert roles.allows("tg:1", Role.APPROVER, namespace="prod")
    assert roles.allows("tg:1", Role.APPROVER, namespace="shop-dev")
    assert not roles.allows("tg:1", Role.APPROVER, namespace="staging")
    assert not roles.allows("tg:1", Role.APPROVER, namespace="*")  # kubectl -A needs an unlimited role
    assert roles.allows("tg:1", Role.APPROVER)  # actions without a namespace
    assert roles.allows("tg:2", Role.APPROVER, namespace="*")
    assert roles.allows("wecom:alice", Role.OPERATOR, namespace="staging")
    assert roles.scope_of("tg:1") == ("prod", "*-dev") and roles.scope_of("tg:2") == ()


@pytest.mark.parametrize("text", ["tg:1=approver@", "tg:1=approver@|", "tg:1=approver@pr/od", "tg:1=boss@prod"])
def test_roles_namespace_errors_name_the_entry(text: str) -> None:
    with pytest.raises(ValueError, match="tg:1"):
        parse_roles(text)


# --- execution and WeCom settings ------------------------------------------------------------------


def test_settings_execution_and_wecom_defaults() -> None:
    settings = load_settings(_env_file=None)
    assert settings.executor == "dry-run" and settings.kubectl == "kubectl" and settings.kubeconfig is None
    config = settings.execution_config
    assert (config.timeout_seconds, config.max_retries, config.retry_delay_seconds) == (120, 2, 30)
    assert settings.failure_notify_targets == [] and settings.failure_notify_enabled
    assert settings.wecom_keys == () and settings.wecom_crypto is None
    assert settings.wecom_api_base == "https://qyapi.weixin.qq.com"


def test_settings_wecom_values_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERTPILOT_WECOM_WEBHOOK_KEYS", " robot-key-0001 , robot-key-0002,")
    monkeypatch.setenv("ALERTPILOT_WECOM_ONCALL", "zhangsan, lisi")
    monkeypatch.setenv("ALERTPILOT_WECOM_BOT_TOKEN", "QDG6eK")
    monkeypatch.setenv("ALERTPILOT_WECOM_BOT_AES_KEY", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C")
    monkeypatch.setenv("ALERTPILOT_FAILURE_NOTIFY", "tg:111, tg:-100123, wecom:zhangsan")
    settings = load_settings(_env_file=None)
    assert settings.wecom_keys == ("robot-key-0001", "robot-key-0002")
    assert settings.wecom_oncall_ids == ("zhangsan", "lisi") and settings.wecom_crypto is not None
    assert [(t.channel, t.id, t.person) for t in settings.failure_notify_targets] == [
        ("telegram", "111", True), ("telegram", "-100123", False), ("wecom", "zhangsan", True)
    ]


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ALERTPILOT_WECOM_WEBHOOK_KEYS", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abc", "key=…"),
        ("ALERTPILOT_WECOM_ONCALL", "zhang san", "not a WeCom userid"),
        ("ALERTPILOT_WECOM_BOT_AES_KEY", "short", "43 characters"),
        ("ALERTPILOT_FAILURE_NOTIFY", "slack:#ops", "not a target"),
        ("ALERTPILOT_FAILURE_NOTIFY_TITLE", "failed {incident}", "unknown placeholder"),
        ("ALERTPILOT_EXECUTOR", "shell", "ALERTPILOT_EXECUTOR"),
        ("ALERTPILOT_MAX_RETRIES", "-1", "ALERTPILOT_MAX_RETRIES"),
    ],
)
def test_settings_execution_and_wecom_errors_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    if variable == "ALERTPILOT_WECOM_BOT_AES_KEY":
        monkeypatch.setenv("ALERTPILOT_WECOM_BOT_TOKEN", "t")
    with pytest.raises(SettingsError) as raised:
        load_settings(_env_file=None)
    assert variable in str(raised.value) or variable == "ALERTPILOT_FAILURE_NOTIFY_TITLE"
    assert message in str(raised.value)


def test_settings_wecom_callback_needs_token_and_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERTPILOT_WECOM_BOT_TOKEN", "QDG6eK")
    with pytest.raises(SettingsError, match="ALERTPILOT_WECOM_BOT_AES_KEY is not set"):
        load_settings(_env_file=None)


async def test_serve_refuses_a_kubectl_it_cannot_find(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = load_settings(
        _env_file=None, executor="kubectl", kubectl=str(tmp_path / "no-kubectl"),
        database_url=f"sqlite+aiosqlite:///{tmp_path}/a.db",
    )
    assert await serve(settings) == 2
    assert "ALERTPILOT_KUBECTL" in capsys.readouterr().err


def test_banner_names_the_wecom_callback_and_robots_when_configured() -> None:
    settings = load_settings(
        _env_file=None, wecom_webhook_keys="robot-key-0001", wecom_bot_token="QDG6eK",
        wecom_bot_aes_key="jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", executor="kubectl",
    )
    text = banner_text(settings, Banner(token="t", token_generated=False, card_targets=()), "http://127.0.0.1:8080")
    assert "POST /wecom/callback" in text and "1 group robot(s) robo…01" in text
    assert "robot-key-0001" not in text and "kubectl with the default kubeconfig" in text
    plain = banner_text(load_settings(_env_file=None), Banner(token="t", token_generated=False, card_targets=()), "u")
    assert "/wecom/callback" not in plain and "dry run" in plain


def test_banner_names_the_sources_and_routes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = load_settings(
        _env_file=None, telegram_token="123:ABC", routes="team=payments -> tg:-100123",
        sources='[{"name": "ci", "hmac_secret": "ci-hmac-secret-0123456789", "kinds": ["generic"]}]',
    )
    text = banner_text(settings, Banner(token="t", token_generated=False, card_targets=()), "http://127.0.0.1:8080")
    assert "; sources ci" in text and "ci-hmac-secret" not in text
    assert "routes         team=payments → telegram:-100123; anything else → the card chats" in text
    assert "/webhooks/alertmanager|grafana|generic" in text


async def test_serve_refuses_bad_sources_with_the_setting_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = load_settings(_env_file=None, database_url=f"sqlite+aiosqlite:///{tmp_path}/a.db",
                             sources='[{"name": "ci", "token": "short"}]')
    assert await serve(settings) == 2
    err = capsys.readouterr().err
    assert "ALERTPILOT_SOURCES: sources[0] (ci).token: must be 16-512" in err and "short" not in err  # not echoed


def test_banner_says_what_the_model_may_look_at() -> None:
    banner = Banner(token="t", token_generated=False, card_targets=())
    ai = {"ai_base_url": "http://127.0.0.1:1/v1", "ai_model": "m"}
    text = banner_text(load_settings(_env_file=None, prometheus_url="http://127.0.0.1:9090", **ai), banner, "u")
    assert "AI m at http://127.0.0.1:1/v1 (looks first: up to 6 read-only PromQL calls)" in text
    plain = banner_text(load_settings(_env_file=None, **ai), banner, "u")
    assert "looks first" not in plain  # nothing to look at: the single-shot prompt
    off = banner_text(load_settings(_env_file=None, prometheus_url="http://127.0.0.1:9090", ai_max_tool_calls=0, **ai),
                      banner, "u")
    assert "looks first" not in off
