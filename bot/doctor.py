"""`alertpilot doctor [--send]`: check the configuration and every configured connection, read-only, and print
one table row per check (ok, warn, FAIL or skipped) with a concrete fix for every problem.

Each check is a small function returning ``Check`` records; ``run_checks`` runs the network ones concurrently,
each under a time limit, and turns a check that raises into a FAIL row. ``render_table`` replaces every
configured secret (bot token, robot keys, API keys, the database password) before anything is printed.
Nothing here writes: the database is opened read-only and never created or upgraded, and WeCom robots are
posted to only with ``--send``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from sqlalchemy import inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from sqlmodel import SQLModel

from bot.chat.wecom import mask_key
from bot.chat.wecom_crypto import WeComCrypto
from bot.settings import Settings, SettingsError
from services.errors import InvalidPlaybooks, ModelError, ModelTimeout
from services.executors import SubprocessExecutor
from services.llm import OpenAICompatibleModel
from services.playbooks import load_playbooks_file
from services.sources.credentials import InvalidSources, load_sources
from storage import (
    migrate,
    tables,  # noqa: F401  (registers the tables on SQLModel.metadata)
)

TIMEOUT = 10.0  # seconds per check: doctor never hangs on one peer
KUBECTL_REQUEST_TIMEOUT = "5s"
SCHEMA_FIX = ("run `alertpilot db upgrade` (start-up does it when ALERTPILOT_AUTO_MIGRATE is on, the default for "
              "SQLite)")
TOKEN_FIX = "set ALERTPILOT_TELEGRAM_TOKEN to the token @BotFather gave you (BotFather → /mybots → API Token)"
WECOM_ERRORS_URL = "https://developer.work.weixin.qq.com/document/path/90313"
PING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}},
    "required": ["ok"],
    "additionalProperties": False,
}
PING_MESSAGES = [
    {"role": "system", "content": "You are a health check. Answer with JSON only."},
    {"role": "user", "content": 'Reply with exactly {"ok": true}'},
]


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""  # what to change; every warn and FAIL has one


def ok(name: str, detail: str) -> Check:
    return Check(name, Status.OK, detail)


def warn(name: str, detail: str, fix: str) -> Check:
    return Check(name, Status.WARN, detail, fix)


def fail(name: str, detail: str, fix: str) -> Check:
    return Check(name, Status.FAIL, detail, fix)


def skipped(name: str, detail: str) -> Check:
    return Check(name, Status.SKIPPED, detail)


# --- running and presenting ---------------------------------------------------------------------------------


async def run_checks(settings: Settings, *, send: bool = False, timeout: float = TIMEOUT) -> list[Check]:
    """Every check, in a fixed order; the network ones run concurrently, each within ``timeout`` seconds."""
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as http:
        probes: list[tuple[str, str, Awaitable[list[Check]]]] = [
            ("database", "check that the database server is up and reachable from this host",
             check_database(settings)),
            ("telegram", f"check that this host reaches {settings.telegram_api_base} (proxy, firewall)",
             check_telegram(settings, http)),
            ("wecom robots", f"check that this host reaches {settings.wecom_api_base} (proxy, firewall)",
             check_wecom_robots(settings, http, send=send)),
            *((name, fix, check_model(name, base, model, key, var, min(settings.ai_timeout_seconds, timeout)))
              for name, base, model, key, var, fix in model_targets(settings)),
            ("kubectl", "check ALERTPILOT_KUBECONFIG / ALERTPILOT_KUBE_CONTEXT and that the cluster is reachable",
             check_kubectl(settings, timeout=timeout)),
            ("prometheus", "check ALERTPILOT_PROMETHEUS_URL and that Prometheus is reachable from this host",
             check_upstream("prometheus", "ALERTPILOT_PROMETHEUS_URL", settings.prometheus_url,
                            "/api/v1/status/buildinfo", http)),
            ("alertmanager", "check ALERTPILOT_ALERTMANAGER_URL and that Alertmanager is reachable from this host",
             check_upstream("alertmanager", "ALERTPILOT_ALERTMANAGER_URL", settings.alertmanager_url,
                            "/api/v2/status", http)),
        ]
        if not settings.ai_enabled:
            probes.insert(3, ("ai model", "", _just(skipped(
                "ai model", "ALERTPILOT_AI_BASE_URL / ALERTPILOT_AI_MODEL not set: the built-in rules propose"))))
        results = await asyncio.gather(*(guarded(name, probe, timeout, fix) for name, fix, probe in probes))
    rows = configuration_checks(settings)
    for (name, _, _), result in zip(probes, results, strict=True):
        rows += result
        if name == "wecom robots":
            rows += check_wecom_callback(settings)
    return rows


async def guarded(name: str, probe: Awaitable[list[Check]], timeout: float, fix: str) -> list[Check]:
    """The probe's rows; a FAIL row when it takes longer than ``timeout`` or raises."""
    try:
        async with asyncio.timeout(timeout):
            return await probe
    except TimeoutError:
        return [fail(name, f"no answer within {timeout:g} s", fix)]
    except Exception as exc:  # a check must never become a traceback
        return [fail(name, f"the check itself failed: {type(exc).__name__}: {exc}",
                     fix or "run again with ALERTPILOT_LOG_LEVEL=debug and report it")]


async def _just(check: Check) -> list[Check]:
    return [check]


async def doctor(settings: Settings, *, send: bool = False, timeout: float = TIMEOUT) -> int:
    """Run the checks, print the table; 0 when nothing FAILed."""
    checks = await run_checks(settings, send=send, timeout=timeout)
    print(render_table(checks, secrets=secrets_of(settings)), flush=True)
    return exit_code(checks)


def settings_failed(exc: SettingsError) -> int:
    """The configuration does not load: one FAIL row naming the variables, and a non-zero exit."""
    detail = str(exc).removeprefix("invalid configuration:").strip()
    check = fail("configuration", detail, "fix the variables named here (in the environment or ./.env), then run "
                                          "alertpilot doctor again")
    print(render_table([check]), flush=True)
    return exit_code([check])


def exit_code(checks: Iterable[Check]) -> int:
    return 1 if any(c.status is Status.FAIL for c in checks) else 0


def secrets_of(settings: Settings) -> dict[str, str]:
    """Every configured secret and what is printed in its place."""
    found: dict[str, str] = {}
    for value, shown in (
        (settings.telegram_token, "<token>"), (settings.ai_api_key, "<api key>"),
        (settings.ingest_token, "<ingest token>"), (settings.gitops_token, "<gitops token>"),
        (settings.wecom_bot_token, "<wecom bot token>"), (settings.wecom_bot_aes_key, "<wecom aes key>"),
    ):
        if value is not None:
            found[value.get_secret_value()] = shown
    for key in settings.wecom_keys:
        found[key] = mask_key(key)
    password = make_url(settings.database_url).password
    if password:
        found[str(password)] = "***"
    return {secret: shown for secret, shown in found.items() if len(secret) >= 4}


def redact(text: str, secrets: Mapping[str, str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):  # a longer secret may contain a shorter one
        text = text.replace(secret, secrets[secret])
    return text


def render_table(checks: list[Check], *, secrets: Mapping[str, str] | None = None) -> str:
    """Aligned plain-text columns CHECK, STATUS, DETAIL; each problem's fix on the line below its detail."""
    secrets = secrets or {}
    names = [redact(c.name, secrets) for c in checks]
    name_width = max([len("CHECK"), *map(len, names)])
    status_width = max(len(s.value) for s in Status)
    indent = " " * (name_width + status_width + 4)
    lines = [f"{'CHECK':<{name_width}}  {'STATUS':<{status_width}}  DETAIL"]
    for name, check in zip(names, checks, strict=True):
        detail, *more = redact(check.detail, secrets).splitlines() or [""]
        lines.append(f"{name:<{name_width}}  {check.status.value:<{status_width}}  {detail}".rstrip())
        lines += [f"{indent}{line.strip()}" for line in more]
        if check.fix and check.status in (Status.WARN, Status.FAIL):
            lines.append(f"{indent}→ fix: {redact(check.fix, secrets)}")
    counts = {s: sum(c.status is s for c in checks) for s in Status}
    summary = ", ".join(f"{n} {s.value}" for s, n in counts.items() if n)
    verdict = "problems to fix above" if counts[Status.FAIL] else "nothing failed"
    return "\n".join([*lines, "", f"{summary}: {verdict}"])


# --- configuration ----------------------------------------------------------------------------------------


def configuration_checks(settings: Settings) -> list[Check]:
    rows = [ok("configuration", "loaded from the environment" + (" and ./.env" if Path(".env").is_file() else ""))]
    now = datetime.now(settings.tz)
    rows.append(ok("time zone", f"{settings.timezone} (now {now:%H:%M} there, UTC{now:%z})"))
    if settings.playbooks_file is None:
        rows.append(skipped("playbooks", "ALERTPILOT_PLAYBOOKS_FILE not set"))
    else:
        try:
            specs = load_playbooks_file(settings.playbooks_file)
        except InvalidPlaybooks as exc:
            rows.append(fail("playbooks", str(exc), "fix the file named here (see examples/playbooks.yaml), or unset "
                                                    "ALERTPILOT_PLAYBOOKS_FILE"))
        else:
            rows.append(ok("playbooks", f"{len(specs)} playbook(s) in {settings.playbooks_file}"))
    if settings.sources is None and settings.sources_file is None:
        rows.append(skipped("sources", "only the default source (ALERTPILOT_INGEST_TOKEN or the generated token)"))
    else:
        rows.append(_sources_check(settings))
    return rows


def _sources_check(settings: Settings) -> Check:
    text = settings.sources.get_secret_value() if settings.sources is not None else None
    try:
        sources = load_sources(text, settings.sources_file, chat=settings.chat_target)
    except InvalidSources as exc:
        return fail("sources", str(exc), "fix the entry named here in ALERTPILOT_SOURCES / ALERTPILOT_SOURCES_FILE")
    ingest = settings.ingest_token.get_secret_value() if settings.ingest_token is not None else None
    if ingest is not None and any(s.token == ingest for s in sources):
        return fail("sources", "a source's token is ALERTPILOT_INGEST_TOKEN", "give each source its own token")
    return ok("sources", f"{len(sources)} source(s): {', '.join(s.name for s in sources)}")


# --- database ---------------------------------------------------------------------------------------------


async def check_database(settings: Settings) -> list[Check]:
    """Reachable, and every table and column the code declares exists. Read-only: never creates anything."""
    name, shown = "database", settings.database_url_display
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database in ("", ":memory:"):
            return [warn(name, f"{shown}: in memory, nothing survives a restart",
                         "set ALERTPILOT_DATABASE_URL to a file (sqlite+aiosqlite:///./data/alertpilot.db) "
                         "or PostgreSQL")]
        path = Path(database).expanduser()
        if not path.exists():
            return [_missing_sqlite_file(name, path)]
        # mode=ro: opening it cannot create or change anything
        url = URL.create("sqlite+aiosqlite", database=f"file:{quote(str(path.resolve()))}",
                         query={"mode": "ro", "uri": "true"})
        connect_args: dict[str, Any] = {}
    else:
        connect_args = {"timeout": 5}
    engine = create_async_engine(url, poolclass=NullPool, connect_args=connect_args)
    try:
        async with engine.connect() as conn:
            present = await conn.run_sync(_present_columns)
            revision = await conn.run_sync(migrate.revision_of)
    except Exception as exc:
        return [fail(name, f"cannot open {shown}: {type(exc).__name__}: {_first_line(exc)}",
                     "check ALERTPILOT_DATABASE_URL (host, port, user, password, database name) and that the server "
                     "is running" if url.get_backend_name() != "sqlite" else
                     "check that the file is a SQLite database and readable by this user")]
    finally:
        await engine.dispose()
    return [_schema_check(name, shown, present, revision)]


def _missing_sqlite_file(name: str, path: Path) -> Check:
    parent = next((p for p in (path.parent, *path.parent.parents) if p.exists()), Path("/"))
    if not os.access(parent, os.W_OK):
        return fail(name, f"{path} does not exist and {parent} is not writable by this user",
                    f"make {parent} writable, or point ALERTPILOT_DATABASE_URL somewhere this user may write")
    return warn(name, f"{path} does not exist yet", SCHEMA_FIX)


def _present_columns(conn: Any) -> dict[str, set[str]]:
    inspector = inspect(conn)
    return {table: {c["name"] for c in inspector.get_columns(table)} for table in inspector.get_table_names()}


def _schema_check(name: str, shown: str, present: dict[str, set[str]], revision: str | None) -> Check:
    """Current: at this release's revision and every declared table and column exists. Behind (or from before
    migrations) is a warning: `alertpilot db upgrade`. Two things that command cannot mend are failures: a
    missing NOT NULL column in a database from before migrations, and tables or columns missing from a
    database that says it is current (changed by hand)."""
    tables_missing: list[str] = []
    columns_missing: list[str] = []
    impossible: list[str] = []
    for table in SQLModel.metadata.sorted_tables:
        if table.name not in present:
            tables_missing.append(table.name)
            continue
        for column in table.columns:
            if column.name not in present[table.name]:
                columns_missing.append(f"{table.name}.{column.name}")
                if not column.nullable:
                    impossible.append(f"{table.name}.{column.name}")
    if impossible:
        return fail(name, f"{shown}: NOT NULL column(s) missing: {', '.join(impossible)}",
                    "this database needs a migration alertpilot cannot do: restore a matching release's database "
                    "or migrate it by hand")
    if len(tables_missing) == len(SQLModel.metadata.tables):
        return warn(name, f"{shown}: reachable, but has no alertpilot tables yet", SCHEMA_FIX)
    if tables_missing or columns_missing:
        missing = [*(f"table {t}" for t in tables_missing), *(f"column {c}" for c in columns_missing)]
        if revision == migrate.head():
            return fail(name, f"{shown}: at revision {revision}, yet missing {_listed(missing)}",
                        "the database was changed outside alertpilot's migrations (`alertpilot db upgrade` will not "
                        "add them back): restore it from a backup")
        return warn(name, f"{shown}: schema not current, missing {_listed(missing)}", SCHEMA_FIX)
    if revision != migrate.head():
        at = f"at revision {revision}" if revision else "from a release before migrations"
        return warn(name, f"{shown}: schema {at}, this release needs revision {migrate.head()}", SCHEMA_FIX)
    return ok(name, f"{shown}: reachable, schema current (revision {revision}, {len(SQLModel.metadata.tables)} tables)")


# --- Telegram ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BotAnswer:
    status: int | None  # None: no HTTP answer at all
    result: Any = None
    description: str = ""
    parameters: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200


async def bot_call(http: httpx.AsyncClient, base: str, token: str, method: str, **params: Any) -> BotAnswer:
    """One Bot API call through plain HTTP; never raises for HTTP or network errors."""
    try:
        response = await http.post(f"{base}/bot{token}/{method}", json=params)
    except httpx.HTTPError as exc:
        return BotAnswer(None, description=f"{type(exc).__name__}: {exc}".replace(token, "<token>"))
    try:
        body = response.json()
    except ValueError:
        return BotAnswer(response.status_code, description=f"not a Bot API answer: {response.text[:120]!r}")
    if not isinstance(body, dict):
        return BotAnswer(response.status_code, description="not a Bot API answer")
    if body.get("ok") is True:
        return BotAnswer(200, result=body.get("result"))
    status = body.get("error_code") if isinstance(body.get("error_code"), int) else response.status_code
    return BotAnswer(400 if status == 200 else status, description=str(body.get("description", "")),
                     parameters=body.get("parameters") if isinstance(body.get("parameters"), dict) else None)


async def check_telegram(settings: Settings, http: httpx.AsyncClient) -> list[Check]:
    """Token (getMe), the card chat (getChat, getChatMember for the bot itself), the webhook (none when polling;
    ours in webhook mode)."""
    if settings.telegram_token is None:
        return [skipped("telegram", "ALERTPILOT_TELEGRAM_TOKEN not set")]
    token, base = settings.telegram_token.get_secret_value(), settings.telegram_api_base
    me = await bot_call(http, base, token, "getMe")
    if not me.ok:
        later = [skipped(f"telegram {what}", "needs a working token") for what in ("chat", "webhook")]
        if me.status is None:
            return [fail("telegram token", f"cannot reach {base}: {me.description}",
                         f"check that this host reaches {base} (proxy, firewall), or ALERTPILOT_TELEGRAM_API_BASE"),
                    *later]
        if me.status in (401, 404):  # Telegram answers 404 to a token that is not even token-shaped
            return [fail("telegram token", f"the token is wrong: {me.description or 'Unauthorized'} "
                                           f"(getMe answered {me.status})", TOKEN_FIX), *later]
        return [fail("telegram token", f"getMe answered {me.status}: {me.description}",
                     f"check ALERTPILOT_TELEGRAM_API_BASE ({base}) and try again"), *later]
    bot = me.result if isinstance(me.result, dict) else {}
    username = str(bot.get("username") or "your_bot")
    rows = [ok("telegram token", f"valid: @{username} (id {bot.get('id')})")]
    rows.append(await _telegram_chat(http, settings, token, bot, username))
    rows.append(await _telegram_webhook(http, settings, token))
    return rows


async def _telegram_chat(
    http: httpx.AsyncClient, settings: Settings, token: str, bot: dict[str, Any], username: str
) -> Check:
    name, base, chat_id = "telegram chat", settings.telegram_api_base, settings.telegram_chat_id
    if chat_id is None:
        return warn(name, "ALERTPILOT_TELEGRAM_CHAT_ID is not set: no Telegram chat receives cards",
                    f"add @{username} to your group and send /start there: it answers with the chat id; put it in "
                    "ALERTPILOT_TELEGRAM_CHAT_ID")
    add = f"add @{username} to the group (then send /start there to confirm its id for ALERTPILOT_TELEGRAM_CHAT_ID)"
    chat = await bot_call(http, base, token, "getChat", chat_id=chat_id)
    if not chat.ok:
        migrated = (chat.parameters or {}).get("migrate_to_chat_id")
        if migrated is not None:
            return fail(name, f"chat {chat_id} became the supergroup {migrated}",
                        f"set ALERTPILOT_TELEGRAM_CHAT_ID={migrated}")
        if chat.status is None:
            return fail(name, f"getChat {chat_id}: {chat.description}", f"check that this host reaches {base}")
        return fail(name, f"chat {chat_id}: {chat.description} (getChat answered {chat.status})", add)
    info = chat.result if isinstance(chat.result, dict) else {}
    kind = str(info.get("type", "chat"))
    title = str(info.get("title") or info.get("first_name") or chat_id)
    if kind == "private":
        return ok(name, f"{chat_id}: a private chat with {title}")
    member = await bot_call(http, base, token, "getChatMember", chat_id=chat_id, user_id=bot.get("id"))
    if not member.ok:
        return fail(name, f"{title} ({chat_id}): getChatMember answered {member.status}: {member.description}", add)
    state = member.result if isinstance(member.result, dict) else {}
    status = str(state.get("status", ""))
    where = f"{title} ({kind} {chat_id})"
    if status in ("left", "kicked"):
        how = "unban it and add" if status == "kicked" else "add"
        return fail(name, f"@{username} is not in {where}: {status}", f"{how} @{username} to the group")
    if kind == "channel" and (status not in ("administrator", "creator") or state.get("can_post_messages") is False):
        return fail(name, f"@{username} may not post in the channel {where} ({status})",
                    f"make @{username} an admin of the channel with the right to post messages")
    if status == "restricted" and not state.get("can_send_messages", False):
        return fail(name, f"@{username} is restricted in {where} and may not send messages",
                    f"lift the restriction: group settings → permissions → exceptions → @{username} → send messages")
    permissions = info.get("permissions") if isinstance(info.get("permissions"), dict) else {}
    if status in ("member", "restricted") and permissions.get("can_send_messages") is False:
        return fail(name, f"members may not send messages in {where}",
                    f"make @{username} an admin of the group, or allow members to send messages")
    role = {"creator": "the owner", "administrator": "an admin", "restricted": "restricted"}.get(status, "a member")
    return ok(name, f"{where}: @{username} is {role} and can send")


async def _telegram_webhook(http: httpx.AsyncClient, settings: Settings, token: str) -> Check:
    """Polling: no webhook (polling removes one at start-up, so one set means another deployment uses this bot).
    Webhook mode: Telegram has our URL (set at start-up) and its last delivery did not fail."""
    name, base = "telegram webhook", settings.telegram_api_base
    info = await bot_call(http, base, token, "getWebhookInfo")
    if not info.ok:
        return fail(name, f"getWebhookInfo answered {info.status}: {info.description}",
                    f"check that this host reaches {base}")
    result = info.result if isinstance(info.result, dict) else {}
    url = str(result.get("url") or "")
    shown = f"{urlsplit(url).scheme}://{urlsplit(url).hostname}/…" if url else ""
    if not settings.telegram_webhook:
        if url:
            return warn(name, f"a webhook is set ({shown}): long polling removes it at start-up; if another "
                              "deployment uses this bot in webhook mode, the two take its updates from each other",
                        "give each deployment its own bot token (or use ALERTPILOT_TELEGRAM_MODE=webhook everywhere)")
        return ok(name, "none set: alertpilot polls")
    wanted = settings.telegram_webhook_url or ""
    if url != wanted:
        now = f"it is {shown}" if url else "none is set"
        return warn(name, f"{now}; alertpilot sets {wanted} at start-up",
                    "start alertpilot (it calls setWebhook), and check the URL is this deployment's public one")
    error = str(result.get("last_error_message") or "")
    pending = result.get("pending_update_count", 0)
    if error:
        return fail(name, f"Telegram cannot deliver to {wanted}: {error} ({pending} update(s) waiting)",
                    "the URL must be public https (ports 443, 80, 88, 8443) and reach POST /telegram/webhook on a "
                    "replica; the secret must be ALERTPILOT_TELEGRAM_WEBHOOK_SECRET")
    return ok(name, f"set to {wanted}; {pending} update(s) waiting")


# --- WeCom ------------------------------------------------------------------------------------------------


async def check_wecom_robots(settings: Settings, http: httpx.AsyncClient, *, send: bool) -> list[Check]:
    """Each robot key is well-formed (the settings check the shape); ``send`` posts a test message to each."""
    if not settings.wecom_keys:
        return [skipped("wecom robots", "ALERTPILOT_WECOM_WEBHOOK_KEYS not set")]
    if not send:
        return [ok(f"wecom robot {mask_key(key)}", "key well-formed; not sent (use --send to post a test message)")
                for key in settings.wecom_keys]
    return list(await asyncio.gather(*(_robot_send(http, settings.wecom_api_base, key) for key in settings.wecom_keys)))


async def _robot_send(http: httpx.AsyncClient, base: str, key: str) -> Check:
    name = f"wecom robot {mask_key(key)}"
    body = {"msgtype": "text", "text": {"content": f"alertpilot doctor on {socket.gethostname()}: this robot receives "
                                                    "incident cards (test message, nothing to do)."}}
    try:
        response = await http.post(f"{base}/cgi-bin/webhook/send", params={"key": key}, json=body)
        answer = response.json()
    except httpx.HTTPError as exc:
        return fail(name, f"cannot reach {base}: {type(exc).__name__}: {exc}",
                    f"check that this host reaches {base} (proxy, firewall), or ALERTPILOT_WECOM_API_BASE")
    except ValueError:
        return fail(name, f"{base} answered HTTP {response.status_code}, not WeCom's JSON",
                    "check ALERTPILOT_WECOM_API_BASE (https://qyapi.weixin.qq.com)")
    errcode = answer.get("errcode") if isinstance(answer, dict) else None
    errmsg = str(answer.get("errmsg", "")) if isinstance(answer, dict) else ""
    if errcode == 0:
        return ok(name, "test message delivered (errcode 0)")
    detail = f"WeCom refused the test message: errcode {errcode}, {errmsg[:160]}"
    if errcode == 93000:
        return fail(name, detail, "copy the key=… part of the robot's webhook URL (group → 群机器人 → the robot) into "
                                  "ALERTPILOT_WECOM_WEBHOOK_KEYS, or remove this one")
    if errcode == 45009:
        return warn(name, detail, "wait a minute and try again: a robot takes 20 messages a minute")
    return fail(name, detail, f"look up errcode {errcode} at {WECOM_ERRORS_URL}")


def check_wecom_callback(settings: Settings) -> list[Check]:
    """The 智能机器人 callback's Token and EncodingAESKey: both or none, and WeComCrypto accepts them."""
    name = "wecom callback"
    token, aes = settings.wecom_bot_token, settings.wecom_bot_aes_key
    if token is None and aes is None:
        return [skipped(name, "ALERTPILOT_WECOM_BOT_TOKEN / ALERTPILOT_WECOM_BOT_AES_KEY not set: no /wecom/callback")]
    if token is None or aes is None:
        missing = "ALERTPILOT_WECOM_BOT_TOKEN" if token is None else "ALERTPILOT_WECOM_BOT_AES_KEY"
        return [fail(name, f"{missing} is not set", "set both ALERTPILOT_WECOM_BOT_TOKEN and "
                                                    "ALERTPILOT_WECOM_BOT_AES_KEY (the AI bot's Token and "
                                                    "EncodingAESKey), or neither")]
    try:
        WeComCrypto(token.get_secret_value(), aes.get_secret_value())
    except ValueError as exc:
        return [fail(name, str(exc), "copy the EncodingAESKey (43 characters) from the AI bot's API settings into "
                                     "ALERTPILOT_WECOM_BOT_AES_KEY")]
    if not re.fullmatch(r"[A-Za-z0-9]{3,32}", token.get_secret_value()):
        return [warn(name, "the Token is not 3–32 letters and digits, which WeCom's console requires",
                     "copy the Token exactly from the AI bot's API settings into ALERTPILOT_WECOM_BOT_TOKEN")]
    return [ok(name, f"Token and EncodingAESKey well-formed: WeCom calls http(s)://<this host>:{settings.http_port}"
                     "/wecom/callback")]


# --- the AI model -----------------------------------------------------------------------------------------


def model_targets(settings: Settings) -> list[tuple[str, str, str, str | None, str, str]]:
    """(row name, base URL, model, API key, the variable to fix, timeout fix) for the AI model and each distinct
    consensus model; samples of one model share a row."""
    if settings.ai_base_url is None or settings.ai_model is None:
        return []
    key = settings.ai_api_key.get_secret_value() if settings.ai_api_key is not None else None
    hint = "is the model server up and the model loaded? (ALERTPILOT_AI_TIMEOUT_SECONDS raises the limit)"
    targets = [("ai model", settings.ai_base_url, settings.ai_model, key, "ALERTPILOT_AI_BASE_URL", hint)]
    counts: dict[tuple[str, str | None], int] = {}
    for member in settings.consensus_panel:
        counts[(member.model, member.base_url)] = counts.get((member.model, member.base_url), 0) + 1
    for (model, base_url), samples in counts.items():
        host = f"@{urlsplit(base_url).netloc}" if base_url else ""
        label = f"consensus {model}{host}" + (f" ×{samples}" if samples > 1 else "")
        var = "ALERTPILOT_CONSENSUS_MODELS" if base_url else "ALERTPILOT_AI_BASE_URL"
        targets.append((label, base_url or settings.ai_base_url, model, None if base_url else key, var, hint))
    return targets


async def check_model(
    name: str, base_url: str, model: str, api_key: str | None, var: str, timeout: float
) -> list[Check]:
    """One small chat completion with a tiny JSON schema: the server answers, and answers JSON."""
    async with httpx.AsyncClient(base_url=base_url + "/", timeout=timeout) as client:
        llm = OpenAICompatibleModel(client, model=model, api_key=api_key, timeout=timeout)
        try:
            reply = await llm.complete(PING_MESSAGES, json_schema=PING_SCHEMA, max_tokens=50)
        except ModelError as exc:
            return [fail(name, f"{model} at {base_url}: {exc}", _model_fix(exc, base_url, model, var, timeout))]
    text = reply.text.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, re.DOTALL)
    try:
        answer = json.loads(fenced.group(1) if fenced else text)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        return [fail(name, f"{model} at {base_url} answered, but not a JSON object: {text[:80]!r}",
                     f"use a model that follows JSON instructions, or a server with structured output; {var} / "
                     "ALERTPILOT_AI_MODEL")]
    return [ok(name, f"{model} at {base_url} answers JSON (structured output: {reply.response_format})")]


def _model_fix(exc: ModelError, base_url: str, model: str, var: str, timeout: float) -> str:
    message = str(exc)
    if isinstance(exc, ModelTimeout):
        return f"the model did not answer within {timeout:g} s: is the server up and {model!r} loaded? " \
               "(ALERTPILOT_AI_TIMEOUT_SECONDS raises the limit)"
    status = re.match(r"HTTP (\d{3}) ", message)
    if status is None:
        return f"start the model server, or fix {var} ({base_url} did not answer)"
    code = int(status.group(1))
    if code in (401, 403):
        return "check ALERTPILOT_AI_API_KEY (the server refused it)" if var == "ALERTPILOT_AI_BASE_URL" else \
            f"{base_url} wants a key; consensus models on their own server are called without one"
    if code == 404:
        return f"check {var} (most servers want …/v1) and the model name {model!r} (is it pulled / served?)"
    return f"see the model server's log; {var} is {base_url}"


# --- kubectl ----------------------------------------------------------------------------------------------


async def check_kubectl(settings: Settings, *, timeout: float = TIMEOUT) -> list[Check]:
    """Only with ALERTPILOT_EXECUTOR=kubectl: the binary exists and ``kubectl version`` reaches the cluster."""
    name = "kubectl"
    if settings.executor != "kubectl":
        return [skipped(name, "dry-run: nothing runs (ALERTPILOT_EXECUTOR=kubectl runs approved commands)")]
    path = shutil.which(settings.kubectl)
    if path is None:
        return [fail(name, f"ALERTPILOT_KUBECTL: {settings.kubectl!r} is not an executable on PATH",
                     "install kubectl or set ALERTPILOT_KUBECTL to its absolute path (or ALERTPILOT_EXECUTOR=dry-run)")]
    where = ", ".join(filter(None, ["ALERTPILOT_KUBECONFIG" if settings.kubeconfig else "the default kubeconfig",
                                    "ALERTPILOT_KUBE_CONTEXT" if settings.kube_context else None]))
    fix = f"check {where} and that the cluster's API server is reachable from this host (try: {path} version)"
    # the executor that runs approved commands: the same binary, flags, process-group kill on timeout
    executor = SubprocessExecutor(kubectl=path, kubeconfig=settings.kubeconfig, context=settings.kube_context)
    seconds = max(timeout - 1, 1)
    result = await executor.run(
        ("kubectl", "version", "--output=json", f"--request-timeout={KUBECTL_REQUEST_TIMEOUT}"), timeout=seconds)
    if result.error is not None:
        return [fail(name, result.error, "make ALERTPILOT_KUBECTL an executable kubectl (or ALERTPILOT_EXECUTOR=dry-run)")]
    if result.timed_out:
        return [fail(name, f"kubectl version did not finish within {seconds:g} s", fix)]
    if result.exit_code != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        last = lines[-1].strip() if lines else f"exit code {result.exit_code}, nothing on stderr"
        return [fail(name, f"kubectl version failed (exit {result.exit_code}): {last[:200]}", fix)]
    context = f", context {settings.kube_context}" if settings.kube_context else ""
    return [ok(name, f"{path}: {_versions(result.stdout)}{context}")]


def _versions(out: str) -> str:
    try:
        answer = json.loads(out)
        client = answer["clientVersion"]["gitVersion"]
        server = answer["serverVersion"]["gitVersion"]
    except (ValueError, KeyError, TypeError):
        return "the cluster answered"
    return f"client {client}, cluster {server}"


# --- Prometheus and Alertmanager ----------------------------------------------------------------------------


async def check_upstream(name: str, var: str, url: str | None, fallback: str, http: httpx.AsyncClient) -> list[Check]:
    """GET /-/ready (or, where that path is not served, the status API)."""
    if url is None:
        return [skipped(name, f"{var} not set")]
    fix = f"check {var} and that {name} is reachable from this host"
    try:
        response = await http.get(f"{url}/-/ready")
        path = "/-/ready"
        if response.status_code == 404:
            response = await http.get(f"{url}{fallback}")
            path = fallback
    except httpx.HTTPError as exc:
        return [fail(name, f"cannot reach {url}: {type(exc).__name__}: {exc}", fix)]
    if 200 <= response.status_code < 300:
        return [ok(name, f"{url}{path} answered {response.status_code}")]
    return [fail(name, f"{url}{path} answered HTTP {response.status_code}: {response.text[:120].strip()}", fix)]


# --- helpers ----------------------------------------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines() or [""])[0][:200]


def _listed(items: list[str], limit: int = 6) -> str:
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more
