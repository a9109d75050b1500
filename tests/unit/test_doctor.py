"""`alertpilot doctor`: each check against the fakes (Bot API, WeCom, OpenAI-compatible model, kubectl), the
read-only database check, the guard that turns hangs and exceptions into FAIL rows, and the table."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlmodel import SQLModel

from bot.doctor import (
    TOKEN_FIX,
    Check,
    Status,
    _schema_check,
    check_database,
    check_kubectl,
    check_model,
    check_telegram,
    check_upstream,
    check_wecom_callback,
    check_wecom_robots,
    configuration_checks,
    exit_code,
    fail,
    guarded,
    ok,
    render_table,
    secrets_of,
    skipped,
    warn,
)
from bot.settings import Settings
from storage import migrate
from storage.db import Database
from tests.fakes.botapi import FakeBotAPI
from tests.fakes.kubectl import FakeKubectl
from tests.fakes.openai import FakeOpenAI
from tests.fakes.wecom import FakeWeCom
from tests.harness import BOT_TOKEN, CHAT_ID, free_port

KEY = "0a1b2c3d-robot-key-0001"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
VERSION = {"clientVersion": {"gitVersion": "v1.30.2"}, "serverVersion": {"gitVersion": "v1.29.4"}}


def settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"database_url": f"sqlite+aiosqlite:///{tmp_path}/alertpilot.db"}
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


@pytest.fixture
async def bot_api() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI(token=BOT_TOKEN, bot_username="alertpilot_bot", chat_lookup=True) as fake:
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


# --- the table ---------------------------------------------------------------------------------------------


def test_render_table_aligns_columns_and_shows_a_fix_under_every_problem() -> None:
    checks = [
        ok("configuration", "loaded"),
        warn("database", "does not exist yet", "start alertpilot once"),
        fail("telegram token", "the token is wrong", TOKEN_FIX),
        skipped("kubectl", "dry-run: nothing runs"),
    ]
    lines = render_table(checks).splitlines()
    assert lines[0].split() == ["CHECK", "STATUS", "DETAIL"]
    column = lines[0].index("STATUS")
    detail = lines[0].index("DETAIL")
    rows = [line for line in lines[1:] if line and not line.startswith(" ")]
    assert [row[column:detail].strip() for row in rows[:4]] == ["ok", "warn", "FAIL", "skipped"]
    fixes = [line.strip() for line in lines if "→ fix:" in line]
    assert fixes == ["→ fix: start alertpilot once", f"→ fix: {TOKEN_FIX}"]
    assert all(line.index("→") == detail for line in lines if "→ fix:" in line)
    assert lines[-1] == "1 ok, 1 warn, 1 FAIL, 1 skipped: problems to fix above"
    assert exit_code(checks) == 1
    assert exit_code(checks[:2] + checks[3:]) == 0  # warnings and skipped rows do not fail


def test_render_table_never_prints_a_secret(tmp_path: Path) -> None:
    config = settings(tmp_path, telegram_token=BOT_TOKEN, wecom_webhook_keys=KEY, ai_api_key="sk-very-secret",
                      database_url="postgresql+asyncpg://alert:pa55word@db/alertpilot")
    checks = [fail(f"wecom robot {KEY}", f"{BOT_TOKEN} and {KEY} and sk-very-secret and pa55word", f"see {BOT_TOKEN}")]
    text = render_table(checks, secrets=secrets_of(config))
    for secret in (BOT_TOKEN, KEY, "sk-very-secret", "pa55word"):
        assert secret not in text
    assert "<token> and 0a1b…01 and <api key> and ***" in text
    assert "→ fix: see <token>" in text


def test_multi_line_detail_is_indented_under_the_detail_column() -> None:
    text = render_table([fail("configuration", "ALERTPILOT_A: bad\nALERTPILOT_B: worse", "fix them")])
    lines = text.splitlines()
    assert lines[2].strip() == "ALERTPILOT_B: worse" and lines[2].index("A") == lines[0].index("DETAIL")


# --- the guard -----------------------------------------------------------------------------------------------


async def test_a_check_that_raises_or_hangs_becomes_a_fail_row() -> None:
    async def boom() -> list[Check]:
        raise RuntimeError("surprise")

    async def hang() -> list[Check]:
        await asyncio.Event().wait()
        return []

    raised = await guarded("telegram", boom(), 5, "check the network")
    assert raised == [fail("telegram", "the check itself failed: RuntimeError: surprise", "check the network")]
    hung = await guarded("ai model", hang(), 0.05, "is the model loaded?")
    assert hung[0].status is Status.FAIL and hung[0].detail == "no answer within 0.05 s"
    assert hung[0].fix == "is the model loaded?"


# --- configuration -------------------------------------------------------------------------------------------


def test_configuration_rows_report_the_time_zone_and_a_broken_playbooks_file(tmp_path: Path) -> None:
    broken = tmp_path / "playbooks.yaml"
    broken.write_text("playbooks: [{name: 1}]\n")
    rows = by_name(configuration_checks(settings(tmp_path, timezone="Europe/Berlin", playbooks_file=str(broken))))
    assert rows["configuration"].status is Status.OK
    assert rows["time zone"].status is Status.OK and rows["time zone"].detail.startswith("Europe/Berlin")
    assert rows["playbooks"].status is Status.FAIL and str(broken) in rows["playbooks"].detail
    assert rows["sources"].status is Status.SKIPPED


# --- database ------------------------------------------------------------------------------------------------


async def test_database_missing_file_is_a_warning_and_doctor_creates_nothing(tmp_path: Path) -> None:
    config = settings(tmp_path, database_url=f"sqlite+aiosqlite:///{tmp_path}/new/alertpilot.db")
    [row] = await check_database(config)
    assert row.status is Status.WARN and "does not exist yet" in row.detail
    assert row.fix.startswith("run `alertpilot db upgrade`")
    assert not (tmp_path / "new").exists()


async def test_database_current_schema_is_ok(tmp_path: Path) -> None:
    config = settings(tmp_path)
    db = Database(config.database_url)
    await db.create_schema()
    await db.dispose()
    [row] = await check_database(config)
    assert row.status is Status.OK and "schema current" in row.detail


async def _current_database(tmp_path: Path, *edits: str) -> Settings:
    """A database as `alertpilot db upgrade` leaves it, then changed by hand with ``edits`` (SQL)."""
    config = settings(tmp_path)
    db = Database(config.database_url)
    await db.create_schema()
    await db.dispose()
    with sqlite3.connect(tmp_path / "alertpilot.db") as conn:
        for statement in edits:
            conn.execute(statement)
    return config


async def test_a_database_from_before_migrations_is_named_and_left_alone(tmp_path: Path) -> None:
    config = await _current_database(tmp_path, "DROP TABLE alembic_version", "DROP TABLE lease",
                                     'ALTER TABLE incident DROP COLUMN "route"')
    [row] = await check_database(config)
    assert row.status is Status.WARN
    assert "table lease" in row.detail and "column incident.route" in row.detail
    assert "alertpilot db upgrade" in row.fix
    with sqlite3.connect(tmp_path / "alertpilot.db") as conn:  # read-only: nothing was added back
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        columns = {r[1] for r in conn.execute("PRAGMA table_info(incident)")}
    assert "lease" not in tables and "route" not in columns and "alembic_version" not in tables


async def test_a_current_database_missing_a_table_was_changed_by_hand(tmp_path: Path) -> None:
    [row] = await check_database(await _current_database(tmp_path, "DROP TABLE lease"))
    assert row.status is Status.FAIL and f"at revision {migrate.head()}, yet missing table lease" in row.detail
    assert "restore it from a backup" in row.fix and "will not add them back" in row.fix


async def test_a_database_behind_this_release_is_named_with_the_upgrade_command(tmp_path: Path) -> None:
    config = await _current_database(tmp_path, "UPDATE alembic_version SET version_num = '0000'")
    [row] = await check_database(config)
    assert row.status is Status.WARN and "schema at revision 0000" in row.detail
    assert f"needs revision {migrate.head()}" in row.detail and "alertpilot db upgrade" in row.fix


def test_a_missing_not_null_column_is_a_migration_start_up_cannot_do() -> None:
    present = {t.name: {c.name for c in t.columns} for t in SQLModel.metadata.sorted_tables}
    present["alert"].discard("fingerprint")
    row = _schema_check("database", "db", present, None)
    assert row.status is Status.FAIL and "alert.fingerprint" in row.detail and "migration" in row.fix


async def test_database_that_is_not_sqlite_fails(tmp_path: Path) -> None:
    (tmp_path / "alertpilot.db").write_text("this is not a database " * 100)
    [row] = await check_database(settings(tmp_path))
    assert row.status is Status.FAIL and row.detail.startswith("cannot open")


async def test_database_in_memory_is_a_warning(tmp_path: Path) -> None:
    [row] = await check_database(settings(tmp_path, database_url="sqlite+aiosqlite://"))
    assert row.status is Status.WARN and "in memory" in row.detail


# --- Telegram ------------------------------------------------------------------------------------------------


async def test_telegram_healthy(bot_api: FakeBotAPI, http: httpx.AsyncClient, tmp_path: Path) -> None:
    config = settings(tmp_path, telegram_token=BOT_TOKEN, telegram_api_base=bot_api.base_url, telegram_chat_id=CHAT_ID)
    rows = by_name(await check_telegram(config, http))
    assert [r.status for r in rows.values()] == [Status.OK] * 3
    assert rows["telegram token"].detail == "valid: @alertpilot_bot (id 123456)"
    assert "@alertpilot_bot is a member and can send" in rows["telegram chat"].detail
    assert rows["telegram webhook"].detail == "none set: alertpilot polls"
    member = bot_api.calls("getChatMember")[0].params
    assert member["chat_id"] == CHAT_ID and member["user_id"] == bot_api.bot_id


async def test_telegram_wrong_token(bot_api: FakeBotAPI, http: httpx.AsyncClient, tmp_path: Path) -> None:
    config = settings(tmp_path, telegram_token="123456:WRONG", telegram_api_base=bot_api.base_url,
                      telegram_chat_id=CHAT_ID)
    rows = by_name(await check_telegram(config, http))
    assert rows["telegram token"] == fail(
        "telegram token", "the token is wrong: Unauthorized (getMe answered 401)", TOKEN_FIX)
    assert rows["telegram chat"].status is Status.SKIPPED and rows["telegram webhook"].status is Status.SKIPPED


@pytest.mark.parametrize(("status", "fields", "expected", "fix"), [
    ("left", {}, "@alertpilot_bot is not in", "add @alertpilot_bot to the group"),
    ("kicked", {}, "@alertpilot_bot is not in", "unban it and add @alertpilot_bot to the group"),
    ("restricted", {"can_send_messages": False}, "may not send messages", "lift the restriction"),
])
async def test_telegram_bot_that_cannot_send_in_the_chat(
    bot_api: FakeBotAPI, http: httpx.AsyncClient, tmp_path: Path, status: str, fields: dict[str, Any], expected: str,
    fix: str,
) -> None:
    bot_api.set_member(CHAT_ID, bot_api.bot_id, status, **fields)
    config = settings(tmp_path, telegram_token=BOT_TOKEN, telegram_api_base=bot_api.base_url, telegram_chat_id=CHAT_ID)
    row = by_name(await check_telegram(config, http))["telegram chat"]
    assert row.status is Status.FAIL and expected in row.detail and row.fix.startswith(fix)


async def test_telegram_chat_not_found(bot_api: FakeBotAPI, http: httpx.AsyncClient, tmp_path: Path) -> None:
    bot_api.block_chat(CHAT_ID, "Bad Request: chat not found", status=400)
    config = settings(tmp_path, telegram_token=BOT_TOKEN, telegram_api_base=bot_api.base_url, telegram_chat_id=CHAT_ID)
    row = by_name(await check_telegram(config, http))["telegram chat"]
    assert row.status is Status.FAIL and "chat not found" in row.detail
    assert row.fix.startswith("add @alertpilot_bot to the group")


async def test_telegram_chat_id_unset_is_a_warning(bot_api: FakeBotAPI, http: httpx.AsyncClient, tmp_path: Path) -> None:
    config = settings(tmp_path, telegram_token=BOT_TOKEN, telegram_api_base=bot_api.base_url)
    row = by_name(await check_telegram(config, http))["telegram chat"]
    assert row.status is Status.WARN and "send /start" in row.fix
    assert not bot_api.calls("getChat")


async def test_telegram_webhook_set_while_polling_warns_without_printing_the_token(
    bot_api: FakeBotAPI, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    bot_api.webhook_url = f"https://hooks.example.com/telegram/{BOT_TOKEN}"
    config = settings(tmp_path, telegram_token=BOT_TOKEN, telegram_api_base=bot_api.base_url, telegram_chat_id=CHAT_ID)
    checks = await check_telegram(config, http)
    row = by_name(checks)["telegram webhook"]
    assert row.status is Status.WARN and "long polling removes it at start-up" in row.detail
    assert "own bot token" in row.fix
    text = render_table(checks, secrets=secrets_of(config))
    assert BOT_TOKEN not in text and "hooks.example.com" in text


async def test_telegram_webhook_mode_checks_the_url_telegram_has(
    bot_api: FakeBotAPI, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    url = "https://alertpilot.example.com/telegram/webhook"
    config = settings(tmp_path, telegram_token=BOT_TOKEN, telegram_api_base=bot_api.base_url, telegram_chat_id=CHAT_ID,
                      telegram_mode="webhook", telegram_webhook_url=url, telegram_webhook_secret="s3cret")
    row = by_name(await check_telegram(config, http))["telegram webhook"]
    assert row.status is Status.WARN and row.detail == f"none is set; alertpilot sets {url} at start-up"
    bot_api.webhook_url = url
    row = by_name(await check_telegram(config, http))["telegram webhook"]
    assert row.status is Status.OK and row.detail.startswith(f"set to {url}; ")


async def test_telegram_unset_is_skipped(http: httpx.AsyncClient, tmp_path: Path) -> None:
    assert await check_telegram(settings(tmp_path), http) == [skipped("telegram", "ALERTPILOT_TELEGRAM_TOKEN not set")]


# --- WeCom ---------------------------------------------------------------------------------------------------


async def test_wecom_robots_are_not_posted_to_without_send(http: httpx.AsyncClient, tmp_path: Path) -> None:
    async with FakeWeCom(keys=(KEY,)) as wecom:
        config = settings(tmp_path, wecom_webhook_keys=KEY, wecom_api_base=wecom.base_url)
        [row] = await check_wecom_robots(config, http, send=False)
        assert wecom.sends == []
    assert row == ok("wecom robot 0a1b…01", "key well-formed; not sent (use --send to post a test message)")


async def test_wecom_send_reports_each_robot(http: httpx.AsyncClient, tmp_path: Path) -> None:
    wrong, second = "ffff0000-wrong-key-99", "eeee0000-second-key-42"
    async with FakeWeCom(keys=(KEY, second)) as wecom:
        config = settings(tmp_path, wecom_webhook_keys=f"{KEY},{wrong},{second}", wecom_api_base=wecom.base_url)
        rows = await check_wecom_robots(config, http, send=True)
        assert [s.msgtype for s in wecom.delivered(KEY)] == ["text"] and len(wecom.delivered(second)) == 1
    assert rows[0] == ok("wecom robot 0a1b…01", "test message delivered (errcode 0)")
    assert rows[1].name == "wecom robot ffff…99" and rows[1].status is Status.FAIL
    assert "errcode 93000" in rows[1].detail and "ALERTPILOT_WECOM_WEBHOOK_KEYS" in rows[1].fix
    assert rows[2].status is Status.OK


async def test_wecom_rate_limited_send_is_a_warning(http: httpx.AsyncClient, tmp_path: Path) -> None:
    async with FakeWeCom(keys=(KEY,)) as wecom:
        wecom.fail_next(45009)
        config = settings(tmp_path, wecom_webhook_keys=KEY, wecom_api_base=wecom.base_url)
        [row] = await check_wecom_robots(config, http, send=True)
    assert row.status is Status.WARN and "45009" in row.detail and "20 messages a minute" in row.fix


def test_wecom_callback_rows(tmp_path: Path) -> None:
    assert check_wecom_callback(settings(tmp_path))[0].status is Status.SKIPPED
    config = settings(tmp_path, wecom_bot_token="tok3n", wecom_bot_aes_key=AES_KEY)
    assert check_wecom_callback(config)[0].status is Status.OK
    broken = config.model_copy(update={"wecom_bot_aes_key": SecretStr("short")})
    [row] = check_wecom_callback(broken)
    assert row.status is Status.FAIL and "43 characters" in row.detail
    half = config.model_copy(update={"wecom_bot_token": None})
    assert check_wecom_callback(half)[0].detail == "ALERTPILOT_WECOM_BOT_TOKEN is not set"


# --- the AI model --------------------------------------------------------------------------------------------


async def test_model_answering_json_is_ok() -> None:
    async with FakeOpenAI() as model:
        model.reply_json({"ok": True})
        [row] = await check_model("ai model", model.base_url, "m", "sk-x", "ALERTPILOT_AI_BASE_URL", 5)
        sent = model.requests[0]
    assert row.status is Status.OK and "answers JSON" in row.detail
    assert sent["response_format"]["json_schema"]["schema"]["required"] == ["ok"]
    assert model.calls[0].headers.get("Authorization") == "Bearer sk-x"


async def test_model_answering_prose_fails() -> None:
    async with FakeOpenAI() as model:
        model.reply_text("Sure! Here is the JSON you asked for.")
        [row] = await check_model("ai model", model.base_url, "m", None, "ALERTPILOT_AI_BASE_URL", 5)
    assert row.status is Status.FAIL and "not a JSON object" in row.detail


async def test_model_refusing_the_key_names_the_api_key() -> None:
    async with FakeOpenAI() as model:
        model.reply_status(401, {"error": {"message": "invalid api key"}})
        [row] = await check_model("ai model", model.base_url, "m", "sk-bad", "ALERTPILOT_AI_BASE_URL", 5)
    assert row.status is Status.FAIL and "HTTP 401" in row.detail and "ALERTPILOT_AI_API_KEY" in row.fix


async def test_model_unreachable_or_silent_fails_with_a_fix() -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1"
    [row] = await check_model("ai model", closed, "m", None, "ALERTPILOT_AI_BASE_URL", 5)
    assert row.status is Status.FAIL and "connection to m failed" in row.detail
    assert row.fix == f"start the model server, or fix ALERTPILOT_AI_BASE_URL ({closed} did not answer)"
    async with FakeOpenAI() as model:
        model.reply_hang()
        [row] = await check_model("ai model", model.base_url, "m", None, "ALERTPILOT_AI_BASE_URL", 0.2)
    assert row.status is Status.FAIL and "within 0.2 s" in row.fix


# --- kubectl -------------------------------------------------------------------------------------------------


async def test_kubectl_skipped_in_dry_run(tmp_path: Path) -> None:
    [row] = await check_kubectl(settings(tmp_path))
    assert row == skipped("kubectl", "dry-run: nothing runs (ALERTPILOT_EXECUTOR=kubectl runs approved commands)")


async def test_kubectl_missing_names_the_variable(tmp_path: Path) -> None:
    [row] = await check_kubectl(settings(tmp_path, executor="kubectl", kubectl="/nonexistent"))
    assert row.status is Status.FAIL and row.detail.startswith("ALERTPILOT_KUBECTL: '/nonexistent'")
    assert "ALERTPILOT_KUBECTL" in row.fix


async def test_kubectl_reaches_the_cluster(tmp_path: Path) -> None:
    fake = FakeKubectl(tmp_path / "k").install()
    fake.on("version", stdout=json.dumps(VERSION))
    config = settings(tmp_path, executor="kubectl", kubectl=str(fake.path), kubeconfig="/etc/kube.yaml",
                      kube_context="prod")
    [row] = await check_kubectl(config)
    assert row == ok("kubectl", f"{fake.path}: client v1.30.2, cluster v1.29.4, context prod")
    # as the executor runs approved commands: the global flags first
    assert fake.calls == [["--kubeconfig=/etc/kube.yaml", "--context=prod", "version", "--output=json",
                           "--request-timeout=5s"]]


async def test_kubectl_that_cannot_reach_the_cluster_shows_stderr(tmp_path: Path) -> None:
    fake = FakeKubectl(tmp_path / "k").install()
    fake.on("version", fail="W0101 warning first\nUnable to connect to the server: dial tcp 10.0.0.1:6443: i/o timeout")
    [row] = await check_kubectl(settings(tmp_path, executor="kubectl", kubectl=str(fake.path)))
    assert row.status is Status.FAIL
    assert row.detail == "kubectl version failed (exit 1): Unable to connect to the server: dial tcp 10.0.0.1:6443: " \
                         "i/o timeout"
    assert "the default kubeconfig" in row.fix


async def test_kubectl_that_hangs_is_killed(tmp_path: Path) -> None:
    fake = FakeKubectl(tmp_path / "k").install()
    fake.on("version", hang=True)
    [row] = await check_kubectl(settings(tmp_path, executor="kubectl", kubectl=str(fake.path)), timeout=1.5)
    assert row.status is Status.FAIL and "did not finish" in row.detail
    assert fake.running() == []


# --- Prometheus and Alertmanager -----------------------------------------------------------------------------


def mock_client(answers: dict[str, int]) -> httpx.AsyncClient:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(answers.get(request.url.path, 404), text="not ready" if request.url.path else "")

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def test_upstream_ready_falls_back_to_the_status_api_and_fails_otherwise() -> None:
    async with mock_client({"/-/ready": 200}) as client:
        [row] = await check_upstream("prometheus", "ALERTPILOT_PROMETHEUS_URL", "http://prom:9090",
                                     "/api/v1/status/buildinfo", client)
    assert row == ok("prometheus", "http://prom:9090/-/ready answered 200")
    async with mock_client({"/api/v1/status/buildinfo": 200}) as client:
        [row] = await check_upstream("prometheus", "ALERTPILOT_PROMETHEUS_URL", "http://prom:9090",
                                     "/api/v1/status/buildinfo", client)
    assert row.status is Status.OK and row.detail.endswith("/api/v1/status/buildinfo answered 200")
    async with mock_client({"/-/ready": 503}) as client:
        [row] = await check_upstream("alertmanager", "ALERTPILOT_ALERTMANAGER_URL", "http://am:9093",
                                     "/api/v2/status", client)
    assert row.status is Status.FAIL and "HTTP 503" in row.detail and "ALERTPILOT_ALERTMANAGER_URL" in row.fix
    async with httpx.AsyncClient(timeout=2) as client:
        [row] = await check_upstream("prometheus", "ALERTPILOT_PROMETHEUS_URL", f"http://127.0.0.1:{free_port()}",
                                     "/api/v1/status/buildinfo", client)
        assert row.status is Status.FAIL and row.detail.startswith("cannot reach")
        [row] = await check_upstream("prometheus", "ALERTPILOT_PROMETHEUS_URL", None, "/", client)
    assert row == skipped("prometheus", "ALERTPILOT_PROMETHEUS_URL not set")
