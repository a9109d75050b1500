"""The composition root: build_app(settings) wires everything; main() is the console entry point."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TextIO

import httpx
import structlog
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

try:  # the faster event loop (libuv) where it is available; the standard one elsewhere (Windows)
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None  # type: ignore[assignment]

from bot.chat.console import ConsoleGateway
from bot.chat.telegram import TelegramGateway
from bot.chat.wecom import WeComRobotGateway, mask_key, robot_id
from bot.chat.wecom_streams import WeComStreams
from bot.cli import send_test_alert, service_arg, severity_arg
from bot.deps import Deps
from bot.dispatcher import build_dispatcher
from bot.doctor import doctor, settings_failed
from bot.ingest_token import ensure_ingest_token
from bot.logging import configure_logging
from bot.polling import TelegramPolling
from bot.render import Renderer
from bot.scheduler import build_scheduler
from bot.settings import Settings, SettingsError, load_settings
from bot.webhook import WebhookUpdates, register_webhook
from handlers.http import api, health, ingress, metrics
from handlers.http import telegram as telegram_webhook
from handlers.http import wecom as wecom_callback
from handlers.http.common import DEPS, MAX_BODY_BYTES, HttpDeps, Lifecycle
from handlers.http.middleware import error_middleware
from handlers.jobs import Jobs
from services.ai import AIAdvisor
from services.analysis import AnalysisService
from services.approvals import ApprovalService
from services.assistant import AssistantService
from services.chat import ChatService
from services.consensus import SAMPLE_TEMPERATURE, PanelMember
from services.decision import DecisionService
from services.errors import InvalidPlaybooks
from services.execution import ExecutionService
from services.executors import DryRunExecutor, SubprocessExecutor
from services.failures import FailureNotifier
from services.gitops import GitOpsClient, GitOpsReviewer
from services.housekeeping import Housekeeping
from services.inbox import UpdateInbox
from services.incidents import IncidentService
from services.investigation import HttpUpstream, KubectlAccess, PastIncidents, Toolbox
from services.knowledge import KnowledgeService
from services.languages import MODEL_LANGUAGES, ChatLanguages
from services.learning import LearningService
from services.leases import JobLeases, process_owner
from services.llm import OpenAICompatibleModel
from services.manual import ManualProposals
from services.metrics import Metrics
from services.notify import Notifier, Wakeup
from services.outbox import OutboxSender
from services.pacing import Pacer
from services.playbooks import PlaybookService, PlaybookSpec, load_playbooks_file
from services.ports import ChannelLimits, ChatGateway, ChatTarget, Executor
from services.postmortems import PostmortemService
from services.queries import IncidentQueries
from services.reminders import ReminderService
from services.reports import ReportService
from services.reviews import GitOpsReviews
from services.silences import SilenceService
from services.sources.credentials import DEFAULT_SOURCE, InvalidSources, Source, load_sources
from storage import migrate
from storage.clock import Clock, utcnow
from storage.db import Database

log = structlog.get_logger(__name__)

SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)
FULL_DEPS: web.AppKey[Deps] = web.AppKey("full_deps", Deps)
CONSOLE_TARGET = ChatTarget("console", "log")
UNPACED = ChannelLimits(per_chat_per_second=1e6, per_group_per_minute=1e9, per_bot_per_second=1e6)


def build_app(
    settings: Settings, *, clock: Clock = utcnow, console: TextIO | None = None, scheduler: bool = True
) -> web.Application:
    """The whole application as an aiohttp app; its lifespan starts the workers, the scheduler (unless
    ``scheduler=False``: tests then call the jobs of ``app[JOBS]`` with their own clock) and Telegram polling."""
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[error_middleware])
    app[SETTINGS] = settings
    app.add_routes(ingress.routes)
    app.add_routes(api.routes)
    app.add_routes(health.routes)
    app.add_routes(metrics.routes)
    app.add_routes(wecom_callback.routes)
    app.add_routes(telegram_webhook.routes)

    async def lifespan(app: web.Application) -> AsyncIterator[None]:
        async with _running(app, settings, clock, console, scheduler):
            yield

    app.cleanup_ctx.append(lifespan)
    return app


@contextlib.asynccontextmanager
async def _running(
    app: web.Application, settings: Settings, clock: Clock, console: TextIO | None, run_scheduler: bool
) -> AsyncIterator[None]:
    db = Database(settings.database_url)
    await migrate.ensure(db.engine, auto_migrate=settings.migrate_at_start)
    token, generated = await ensure_ingest_token(db, settings)
    renderer = Renderer(settings.tz, default_lang=settings.language)
    roles = settings.role_map
    languages = ChatLanguages(db, roles, default=settings.language)
    outbox_wakeup, analysis_wakeup, decisions_wakeup = Wakeup(), Wakeup(), Wakeup()

    bot: Bot | None = None
    telegram: TelegramGateway | None = None
    gateways: list[ChatGateway] = []
    if settings.telegram_token is not None:
        session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_base), timeout=30)
        bot = Bot(settings.telegram_token.get_secret_value(), session=session)
        telegram = TelegramGateway(bot, renderer, languages)
        languages.subscribe(telegram.use_language)
        gateways.append(telegram)
    card_targets: list[ChatTarget] = []
    if bot is not None and settings.telegram_chat_id is not None:
        card_targets.append(ChatTarget("telegram", str(settings.telegram_chat_id)))
    wecom_client: httpx.AsyncClient | None = None
    wecom_problems: list[str] = []
    if settings.wecom_keys:
        # One client for WeCom, opened here and closed at shutdown (house style §10).
        wecom_client = httpx.AsyncClient(base_url=settings.wecom_api_base + "/", timeout=10)
        wecom = WeComRobotGateway(wecom_client, renderer, settings.wecom_keys, oncall=settings.wecom_oncall_ids,
                                  languages=languages, key_languages=settings.wecom_key_languages)
        gateways.append(wecom)
        card_targets += [ChatTarget("wecom", chat_id) for chat_id in wecom.chat_ids]
        wecom_problems = await invalid_robots(db, settings)
    if not card_targets:
        card_targets = [CONSOLE_TARGET]
        gateways.append(ConsoleGateway(renderer, console))

    routes = settings.route_list
    sources = (Source(name=DEFAULT_SOURCE, token=token), *source_specs(settings))  # checked by serve()
    routed = [c for r in routes for c in r.chats] + [c for s in sources for c in s.chats]
    notifier = Notifier(card_targets, outbox_wakeup, routed=routed, decisions=decisions_wakeup)
    queries = IncidentQueries(db)
    counters = Metrics()
    knowledge = KnowledgeService(db, clock, roles)
    playbooks = PlaybookService(db, clock)
    specs = playbook_specs(settings)  # checked before start-up by serve(); raises InvalidPlaybooks
    if specs is not None:
        await playbooks.sync(specs)  # logs what it added, updated and disabled
    ai_client: httpx.AsyncClient | None = None
    advisor: AIAdvisor | None = None
    clients: list[httpx.AsyncClient] = []  # the investigation tools' and consensus models' clients, closed at shutdown
    panel: list[tuple[PanelMember, AIAdvisor]] = []
    if settings.ai_base_url is not None and settings.ai_model is not None:
        # One client for the model server, opened here and closed at shutdown (house style §10).
        ai_client = httpx.AsyncClient(base_url=settings.ai_base_url + "/", timeout=settings.ai_timeout_seconds)
        api_key = settings.ai_api_key.get_secret_value() if settings.ai_api_key is not None else None
        model = OpenAICompatibleModel(ai_client, model=settings.ai_model, api_key=api_key, timeout=settings.ai_timeout_seconds)
        toolbox = build_toolbox(settings, knowledge, db, queries, clients)
        language = MODEL_LANGUAGES[settings.language]  # proposals and postmortems: the default language

        def advisor_of(chat_model: OpenAICompatibleModel) -> AIAdvisor:
            return AIAdvisor(chat_model, renderer, counters, toolbox=toolbox, max_tool_calls=settings.ai_max_tool_calls,
                             budget=settings.ai_budget, language=language)
        advisor = advisor_of(model)
        panel = build_panel(settings, ai_client, api_key, clients, advisor_of)
        report_budgets(counters, settings)
    decisions = DecisionService(
        db, playbooks, knowledge, advisor, counters, clock, sla_seconds=settings.decision_sla_seconds,
        panel=panel, consensus_severities=settings.consensus_severity_set,
        allowed_tools=settings.remediation_policy.allowed_tools,
    )
    chat = ChatService(db, queries, notifier, roles, clock)
    gitops_client: httpx.AsyncClient | None = None
    reviews: GitOpsReviews | None = None
    if settings.gitops_provider is not None and settings.gitops_url and settings.gitops_token and settings.gitops_repo:
        gitops_client = httpx.AsyncClient(base_url=settings.gitops_url + "/", timeout=10)
        forge = GitOpsClient(
            gitops_client, provider=settings.gitops_provider, repo=settings.gitops_repo,
            token=settings.gitops_token.get_secret_value(),
        )
        reviews = GitOpsReviews(db, GitOpsReviewer(forge, renderer.render), queries, notifier, clock)
    analysis = AnalysisService(
        db, decisions, settings.remediation_policy, queries, notifier, roles, clock, analysis_wakeup, reviews=reviews
    )
    learning = LearningService(knowledge)
    incidents = IncidentService(
        db, notifier, clock, analysis_wakeup, learning, postmortem_after=timedelta(minutes=settings.postmortem_min_minutes),
        routes=routes, metrics=counters,
    )
    failures = FailureNotifier(
        db, notifier, advisor, clock, targets=settings.failure_notify_targets, channels=[g.channel for g in gateways],
        enabled=settings.failure_notify_enabled, title=settings.failure_notify_title,
        budget_seconds=settings.decision_sla_seconds,
    )
    # The execution worker listens to the notifier's wake-ups that may follow a decision (Notifier.wake).
    execution = ExecutionService(
        db, build_executor(settings), settings.remediation_policy, incidents, learning, failures, notifier, clock,
        decisions_wakeup, config=settings.execution_config, metrics=counters,
    )
    # Scheduled work: every replica runs the same schedule; database leases decide who does each occurrence.
    owner = process_owner()
    leases = JobLeases(db, clock, owner)
    report_targets = settings.report_targets or card_targets
    silences = SilenceService(db, notifier, chat, roles, clock, analysis_wakeup)
    reports = ReportService(
        db, notifier, chat, leases, clock, tz=settings.tz, at=settings.report_time, targets=report_targets,
        grace=timedelta(minutes=settings.report_grace_minutes),
    )
    postmortems = PostmortemService(
        db, queries, notifier, chat, advisor, clock, targets=report_targets, owner=owner,
        budget_seconds=settings.decision_sla_seconds,
    )
    reminders = None
    if settings.approval_reminder_minutes:
        reminders = ReminderService(
            db, notifier, roles, clock, after=timedelta(minutes=settings.approval_reminder_minutes),
            escalate_to=report_targets,
        )
    jobs = Jobs(leases, reports, silences, reminders, postmortems, weekly=settings.weekly_digest, metrics=counters,
                housekeeping=Housekeeping(db, clock))
    app[JOBS] = jobs
    deps = Deps(
        settings=settings,
        db=db,
        renderer=renderer,
        notifier=notifier,
        incidents=incidents,
        queries=queries,
        approvals=ApprovalService(db, notifier, roles, clock, ttl=timedelta(minutes=settings.approval_ttl_minutes)),
        analysis=analysis,
        chat=chat,
        decisions=decisions,
        knowledge=knowledge,
        playbooks=playbooks,
        assistant=AssistantService(
            queries, knowledge, playbooks, advisor, chat, clock, budget_seconds=settings.decision_sla_seconds,
            languages=languages,
        ),
        execution=execution,
        manual=ManualProposals(db, settings.remediation_policy, notifier, roles, clock, reviews=reviews),
        silences=silences,
        reports=reports,
        postmortems=postmortems,
        metrics=counters,
        languages=languages,
        ingest_token=token,
    )
    app[FULL_DEPS] = deps
    crypto = settings.wecom_crypto
    streams: WeComStreams | None = None
    if crypto is not None:
        streams = WeComStreams(renderer)
        app[wecom_callback.WECOM] = wecom_callback.WeComDeps(
            crypto=crypto, db=db, approvals=deps.approvals, assistant=deps.assistant, streams=streams, chat=chat,
            queries=queries, renderer=renderer, clock=clock, silences=silences, reports=reports, postmortems=postmortems,
            languages=languages,
        )
    # Telegram: long polling by one process at a time (a database lease), or webhook mode for replicas. Both
    # judge liveness on the wall clock, whatever clock the rest of the app is given.
    dp = build_dispatcher(deps) if bot is not None else None
    polling: TelegramPolling | None = None
    updates: WebhookUpdates | None = None
    inbox = UpdateInbox(db, utcnow, owner)
    if bot is not None and dp is not None and settings.telegram_webhook:
        updates = WebhookUpdates(inbox, dp, bot)
        assert settings.telegram_webhook_secret is not None  # checked by Settings
        app[telegram_webhook.TELEGRAM_WEBHOOK] = telegram_webhook.TelegramWebhookDeps(
            secret=settings.telegram_webhook_secret.get_secret_value(), inbox=inbox, received=updates.received
        )
    elif bot is not None and dp is not None:
        polling = TelegramPolling(dp, bot, JobLeases(db, utcnow, owner), polling_timeout=settings.telegram_polling_timeout)
    lifecycle = Lifecycle()
    app[LIFECYCLE] = lifecycle
    app[DEPS] = HttpDeps(db=db, incidents=deps.incidents, queries=queries, ingest_token=token,
                         telegram_state=telegram_state(polling, updates), metrics=counters, sources=sources,
                         clock=clock, lifecycle=lifecycle)

    limits = {
        "telegram": ChannelLimits(settings.chat_rate_per_second, settings.group_rate_per_minute, settings.bot_rate_per_second),
        "console": UNPACED,  # a log has no rate limit
        # 20 messages a minute per robot; robots do not share a budget
        "wecom": ChannelLimits(per_chat_per_second=1.0, per_group_per_minute=settings.wecom_rate_per_minute,
                               per_bot_per_second=1e6),
    }
    senders = [
        OutboxSender(
            db, gw, queries, Pacer(limits[gw.channel], gw.is_group), clock,
            max_backoff=settings.outbox_max_backoff_seconds, metrics=counters,
        )
        for gw in gateways
    ]
    if db.is_sqlite:  # one process owns a SQLite file: whatever was in flight when it died goes again now
        for sender in senders:
            await sender.release_own_claims()
        await analysis.release_own_claims()
        await execution.interrupt_running()  # reported in the thread, never re-run blindly
        await inbox.release_own_claims()  # Telegram updates stored but not processed: processed now

    tasks = [
        asyncio.create_task(analysis.run(), name="analysis"),
        asyncio.create_task(deps.approvals.run_expiry(), name="approval-expiry"),
        asyncio.create_task(execution.run(), name="execution"),
    ]
    tasks += [asyncio.create_task(s.run(outbox_wakeup.listener().wait), name=f"outbox-{s.channel}") for s in senders]
    if polling is not None:
        tasks.append(asyncio.create_task(polling.run(), name="telegram-polling"))
    if updates is not None and bot is not None and dp is not None:
        assert settings.telegram_webhook_url is not None and settings.telegram_webhook_secret is not None
        tasks.append(asyncio.create_task(updates.run(), name="telegram-inbox"))
        tasks.append(asyncio.create_task(
            register_webhook(dp, bot, url=settings.telegram_webhook_url,
                             secret=settings.telegram_webhook_secret.get_secret_value()),
            name="telegram-webhook",
        ))
    if telegram is not None:
        tasks.append(asyncio.create_task(telegram.register_commands(), name="telegram-commands"))
    scheduler = build_scheduler(settings, jobs)
    app[SCHEDULER] = scheduler
    if run_scheduler:
        scheduler.start()  # on this loop; the jobs are coroutines
    app[BANNER] = Banner(token=token, token_generated=generated, card_targets=tuple(card_targets),
                         problems=tuple(wecom_problems), report_targets=tuple(report_targets))
    log.info("started", telegram=bot is not None, card_chats=[f"{t.channel}:{t.chat_id}" for t in card_targets])
    try:
        yield
    finally:
        # Draining (SIGTERM; the HTTP server has stopped accepting and finished its requests by now): take no
        # new work, let what is in progress finish and the outbox send what is due, within the grace period.
        lifecycle.draining = True
        if scheduler.running:
            scheduler.shutdown(wait=False)
        try:
            if polling is not None:
                await polling.stop()
            await drain(settings.shutdown_grace_seconds, updates, analysis, execution, senders)
        except Exception:  # stopping goes on whatever happens: the next start picks up what is left
            log.exception("drain_failed")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await decisions.aclose()
        if streams is not None:
            await streams.aclose()
        if reviews is not None:
            await reviews.aclose()
        for client in (ai_client, gitops_client, wecom_client, *clients):
            if client is not None:
                await client.aclose()
        if bot is not None:
            await bot.session.close()
        await db.dispose()
        log.info("stopped")


def telegram_state(polling: TelegramPolling | None, updates: WebhookUpdates | None) -> Callable[[], str]:
    """What /healthz says about Telegram, read when asked (polling may be standing by)."""
    if polling is not None:
        return lambda: polling.state
    return lambda: "webhook" if updates is not None else "not configured"


async def drain(
    grace: float, updates: WebhookUpdates | None, analysis: AnalysisService, execution: ExecutionService,
    senders: list[OutboxSender],
) -> None:
    """Shutting down: finish the Telegram updates, analyses and executions in progress, then flush the outbox
    (its senders still running), all within ``grace`` seconds; what is left is picked up at the next start or
    by another replica, and a command still running is reported interrupted."""
    deadline = asyncio.get_running_loop().time() + grace

    def left() -> float:
        return max(0.0, deadline - asyncio.get_running_loop().time())

    started = asyncio.get_running_loop().time()
    if updates is not None:
        await updates.drain(left())
    await asyncio.gather(analysis.drain(left()), execution.drain(left()))
    flushed = all(await asyncio.gather(*(sender.flush(left()) for sender in senders)))
    log.info("drained", seconds=round(asyncio.get_running_loop().time() - started, 2), outbox_flushed=flushed)


@dataclass(frozen=True)
class Banner:
    token: str
    token_generated: bool
    card_targets: tuple[ChatTarget, ...]
    problems: tuple[str, ...] = ()  # configuration errors found by earlier runs, shown until fixed
    report_targets: tuple[ChatTarget, ...] = ()


async def invalid_robots(db: Database, settings: Settings) -> list[str]:
    """Robots whose messages WeCom refused with 93000 (invalid webhook key) in an earlier run: a configuration
    error that only a send can reveal, so it is shown again at every start until the key is fixed."""
    async with db.read() as tx:
        refused = await tx.outbox.failed_chats("wecom", "errcode 93000")
    problems = []
    for key in settings.wecom_keys:
        if robot_id(key) in refused:
            problems.append(f"ALERTPILOT_WECOM_WEBHOOK_KEYS: WeCom refused robot {mask_key(key)} with errcode 93000 "
                            "(invalid webhook key); fix or remove it")
            log.error("wecom_robot_key_invalid", robot=mask_key(key), hint="fix ALERTPILOT_WECOM_WEBHOOK_KEYS")
    return problems


BANNER: web.AppKey[Banner] = web.AppKey("banner", Banner)
LIFECYCLE: web.AppKey[Lifecycle] = web.AppKey("lifecycle", Lifecycle)
JOBS: web.AppKey[Jobs] = web.AppKey("jobs", Jobs)
SCHEDULER: web.AppKey[AsyncIOScheduler] = web.AppKey("scheduler", AsyncIOScheduler)


def banner_text(settings: Settings, banner: Banner, base_url: str) -> str:
    if not settings.telegram_enabled and settings.wecom_keys:
        telegram = "not configured (set ALERTPILOT_TELEGRAM_TOKEN)"
    elif not settings.telegram_enabled:
        telegram = "not configured: cards are written to this console (set ALERTPILOT_TELEGRAM_TOKEN)"
    elif settings.telegram_chat_id is None:
        telegram = (f"configured ({telegram_mode_text(settings)}), but ALERTPILOT_TELEGRAM_CHAT_ID is not set: cards go "
                    "to this console; send /start in your group to learn its id")
    else:
        telegram = f"configured ({telegram_mode_text(settings)}), cards go to chat {settings.telegram_chat_id}"
    origin = "generated and stored in the database" if banner.token_generated else "from ALERTPILOT_INGEST_TOKEN"
    return "\n".join(
        [
            "alertpilot is running",
            f"  listening on   {base_url}  (POST /webhooks/alertmanager|grafana|generic · GET /api/incidents · GET /healthz /readyz /metrics"
            f"{' · POST /wecom/callback' if settings.wecom_crypto is not None else ''}"
            f"{' · POST /telegram/webhook' if settings.telegram_webhook else ''})",
            f"  database       {settings.database_url_display}",
            f"  ingest token   {banner.token}  ({origin}){sources_text(settings)}",
            *([f"  routes         {routes_text(settings)}"] if settings.routes else []),
            f"  telegram       {telegram}",
            f"  wecom          {wecom_text(settings)}",
            f"  decisions      {decisions_text(settings)}",
            f"  executor       {executor_text(settings)}",
            f"  reports        {reports_text(settings, banner.report_targets)}",
            "  try it         alertpilot send-test-alert",
            *(f"  ⚠ {problem}" for problem in banner.problems),
        ]
    )


def telegram_mode_text(settings: Settings) -> str:
    if settings.telegram_webhook:
        return f"webhook {settings.telegram_webhook_url} → POST /telegram/webhook, secret token checked"
    return "long polling, one process at a time"


def wecom_text(settings: Settings) -> str:
    if not settings.wecom_keys:
        return "not configured (set ALERTPILOT_WECOM_WEBHOOK_KEYS to post cards to WeCom groups)"
    robots = ", ".join(mask_key(k) for k in settings.wecom_keys)
    oncall = f"; @mentions {', '.join(settings.wecom_oncall_ids)} on new cards" if settings.wecom_oncall_ids else ""
    return f"{len(settings.wecom_keys)} group robot(s) {robots} at {settings.wecom_api_base}{oncall}"


def reports_text(settings: Settings, targets: tuple[ChatTarget, ...]) -> str:
    where = ", ".join(f"{t.channel}:{t.chat_id}" for t in targets) or "nowhere"
    weekly = " (Mondays also the weekly digest)" if settings.weekly_digest else ""
    reminders = (f"approval reminders after {settings.approval_reminder_minutes} min"
                 if settings.approval_reminder_minutes else "no approval reminders")
    return (f"daily at {settings.daily_report_time} {settings.timezone}{weekly} to {where}; postmortems for incidents "
            f"of {settings.postmortem_min_minutes} min or more; {reminders}")


def build_toolbox(
    settings: Settings, knowledge: KnowledgeService, db: Database, queries: IncidentQueries,
    clients: list[httpx.AsyncClient],
) -> Toolbox | None:
    """The read-only tools the AI model may call before it proposes: kubectl when a cluster is configured
    (ALERTPILOT_EXECUTOR=kubectl), PromQL and Alertmanager when their URLs are set, and with them the knowledge
    base and past incidents. None (the single-shot prompt, which already carries knowledge and history) when
    there is nothing to look at, or with ALERTPILOT_AI_MAX_TOOL_CALLS=0."""
    if not investigation_text(settings):
        return None
    upstreams: dict[str, HttpUpstream] = {}
    for name, url in (("prometheus", settings.prometheus_url), ("alertmanager", settings.alertmanager_url)):
        if url is not None:
            client = httpx.AsyncClient(timeout=10)
            clients.append(client)
            upstreams[name] = HttpUpstream(url, client)
    kubectl = None
    if settings.executor == "kubectl":
        kubectl = KubectlAccess(path=settings.kubectl, kubeconfig=settings.kubeconfig, context=settings.kube_context)
    return Toolbox(
        policy=settings.remediation_policy, kubectl=kubectl, prometheus=upstreams.get("prometheus"),
        alertmanager=upstreams.get("alertmanager"), knowledge=knowledge, incidents=PastIncidents(db, queries),
    )


def build_panel(
    settings: Settings, ai_client: httpx.AsyncClient, api_key: str | None, clients: list[httpx.AsyncClient],
    advisor: Callable[[OpenAICompatibleModel], AIAdvisor],
) -> list[tuple[PanelMember, AIAdvisor]]:
    """The consensus analyses (ALERTPILOT_CONSENSUS_MODELS): models at the AI server share its client and key; a
    model at its own URL gets its own client and no key (the key belongs to the AI server). Samples of one model
    are asked with some temperature, so they are independent."""
    panel: list[tuple[PanelMember, AIAdvisor]] = []
    own: dict[str, httpx.AsyncClient] = {}
    for member in settings.consensus_panel:
        client, key = ai_client, api_key
        if member.base_url is not None:
            if member.base_url not in own:
                own[member.base_url] = httpx.AsyncClient(base_url=member.base_url + "/", timeout=settings.ai_timeout_seconds)
                clients.append(own[member.base_url])
            client, key = own[member.base_url], None
        model = OpenAICompatibleModel(client, model=member.model, api_key=key, timeout=settings.ai_timeout_seconds,
                                      temperature=SAMPLE_TEMPERATURE if member.sample else 0.0)
        panel.append((member, advisor(model)))
    return panel


def report_budgets(metrics: Metrics, settings: Settings) -> None:
    """The per-analysis budgets on /metrics (alertpilot_ai_budget), next to what the analyses spend."""
    budget = settings.ai_budget
    if budget.tokens is not None:
        metrics.set("alertpilot_ai_budget", budget.tokens, budget="tokens")
    if budget.seconds is not None:
        metrics.set("alertpilot_ai_budget", budget.seconds, budget="seconds")
    metrics.set("alertpilot_ai_budget", settings.ai_max_tool_calls, budget="tool_calls")


def build_executor(settings: Settings) -> Executor:
    if settings.executor == "kubectl":
        return SubprocessExecutor(kubectl=settings.kubectl, kubeconfig=settings.kubeconfig, context=settings.kube_context)
    return DryRunExecutor()


def executor_text(settings: Settings) -> str:
    if settings.executor != "kubectl":
        return "dry run: approved commands are recorded and threaded, nothing is executed (ALERTPILOT_EXECUTOR=kubectl runs them)"
    where = [f"kubeconfig {settings.kubeconfig}"] if settings.kubeconfig else ["the default kubeconfig"]
    if settings.kube_context:
        where.append(f"context {settings.kube_context}")
    retries = f"{settings.max_retries} retries {settings.retry_delay_seconds:g} s apart"
    return f"{settings.kubectl} with {', '.join(where)}; {settings.exec_timeout_seconds:g} s per attempt, {retries}"


def check_executor(settings: Settings) -> str | None:
    """The kubectl executor's binary must exist before anything is approved; the problem, or None."""
    if settings.executor == "kubectl" and shutil.which(settings.kubectl) is None:
        return f"ALERTPILOT_KUBECTL: {settings.kubectl!r} is not an executable on PATH (or set ALERTPILOT_EXECUTOR=dry-run)"
    return None


def decisions_text(settings: Settings) -> str:
    playbooks = f"playbooks from {settings.playbooks_file} → " if settings.playbooks_file else "playbooks → "
    if settings.ai_base_url is None or settings.ai_model is None:
        model = "no AI model (set ALERTPILOT_AI_BASE_URL and ALERTPILOT_AI_MODEL) → "
    else:
        model = f"AI {settings.ai_model} at {settings.ai_base_url}{investigation_text(settings)}{consensus_text(settings)} → "
    return f"{playbooks}{model}rules, within {settings.decision_sla_seconds:g} s"


def consensus_text(settings: Settings) -> str:
    """Which incidents get several analyses, and from which models (never a key)."""
    panel = settings.consensus_panel
    if not panel:
        return ""
    names = ", ".join(m.label + (f" at {m.base_url}" if m.base_url else "") for m in panel)
    return f"; consensus of {len(panel)} for {settings.consensus_severities}: {names}"


def investigation_text(settings: Settings) -> str:
    """What the model may look at before it proposes (the same conditions as build_toolbox)."""
    looks = [name for name, on in (("kubectl", settings.executor == "kubectl"), ("PromQL", settings.prometheus_url),
                                   ("Alertmanager", settings.alertmanager_url)) if on]
    if settings.ai_max_tool_calls == 0 or not looks:
        return ""
    return f" (looks first: up to {settings.ai_max_tool_calls} read-only {', '.join(looks)} calls)"


def sources_text(settings: Settings) -> str:
    try:
        names = [s.name for s in source_specs(settings)]
    except InvalidSources:
        return ""
    return f"; sources {', '.join(names)}" if names else ""


def routes_text(settings: Settings) -> str:
    return "; ".join(
        f"{' '.join(f'{k}={v}' for k, v in r.matchers.items())} → {', '.join(f'{c.channel}:{c.chat_id}' for c in r.chats)}"
        for r in settings.route_list
    ) + "; anything else → the card chats"


def source_specs(settings: Settings) -> list[Source]:
    """The alert sources of ALERTPILOT_SOURCES / ALERTPILOT_SOURCES_FILE. Raises InvalidSources."""
    text = settings.sources.get_secret_value() if settings.sources is not None else None
    sources = load_sources(text, settings.sources_file, chat=settings.chat_target)
    ingest = settings.ingest_token.get_secret_value() if settings.ingest_token is not None else None
    if ingest is not None and any(s.token == ingest for s in sources):
        raise InvalidSources("a source's token is ALERTPILOT_INGEST_TOKEN: give each source its own")
    return sources


def playbook_specs(settings: Settings) -> list[PlaybookSpec] | None:
    """The playbooks of ALERTPILOT_PLAYBOOKS_FILE (None when unset). Raises InvalidPlaybooks."""
    if settings.playbooks_file is None:
        return None
    return load_playbooks_file(settings.playbooks_file)


async def check_database(settings: Settings) -> str | None:
    """Open the database and bring its schema to this release's (ALERTPILOT_AUTO_MIGRATE) before anything
    else; the problem, or None."""
    try:
        db = Database(settings.database_url)
    except Exception as exc:
        return f"cannot open {settings.database_url_display}: {type(exc).__name__}: {exc}"
    try:
        await migrate.ensure(db.engine, auto_migrate=settings.migrate_at_start)
        await db.ping()
    except migrate.SchemaOutOfDate as exc:
        return str(exc)
    except Exception as exc:
        return f"cannot open {settings.database_url_display}: {type(exc).__name__}: {exc}"
    finally:
        await db.dispose()
    return None


async def migrate_database(settings: Settings, *, check_only: bool = False) -> int:
    """``alertpilot db upgrade`` (``db status`` with ``check_only``): 0 when the schema is this release's."""
    db = Database(settings.database_url)
    try:
        if check_only:
            found = await migrate.state(db.engine)
            print(f"{settings.database_url_display}: {found.describe()}; this release: revision {found.head}"
                  + ("" if found.up_to_date else " — run `alertpilot db upgrade`"))
            return 0 if found.up_to_date else 1
        before, after = await migrate.upgrade(db.engine)
        if before.up_to_date:
            print(f"{settings.database_url_display}: already at revision {after.head}, nothing to do")
        else:
            print(f"{settings.database_url_display}: upgraded from {before.describe()} to revision {after.current}")
        return 0
    except Exception as exc:
        print(f"alertpilot: ALERTPILOT_DATABASE_URL: {settings.database_url_display}: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return 2
    finally:
        await db.dispose()


async def serve(settings: Settings) -> int:
    """Run until SIGINT/SIGTERM. Start-up problems come out as one line naming what to change."""
    problem = await check_database(settings)
    if problem is not None:
        print(f"alertpilot: ALERTPILOT_DATABASE_URL: {problem}", file=sys.stderr)
        return 2
    try:
        playbook_specs(settings)
    except InvalidPlaybooks as exc:
        print(f"alertpilot: ALERTPILOT_PLAYBOOKS_FILE: {exc}", file=sys.stderr)
        return 2
    try:
        source_specs(settings)
    except InvalidSources as exc:
        print(f"alertpilot: {exc}", file=sys.stderr)
        return 2
    problem = check_executor(settings)
    if problem is not None:
        print(f"alertpilot: {problem}", file=sys.stderr)
        return 2
    app = build_app(settings)
    # SIGTERM: the listener closes, requests in progress get part of the grace period, then _running drains
    runner = web.AppRunner(app, access_log=None, handle_signals=False,
                           shutdown_timeout=min(10.0, settings.shutdown_grace_seconds))
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, settings.http_host, settings.http_port).start()
        except OSError as exc:
            print(f"alertpilot: cannot listen on {settings.http_host}:{settings.http_port}: {exc.strerror or exc}"
                  " (set ALERTPILOT_HTTP_HOST / ALERTPILOT_HTTP_PORT)", file=sys.stderr)
            return 1
        host, port = runner.addresses[0][:2]
        print(banner_text(settings, app[BANNER], f"http://{host}:{port}"), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        app[LIFECYCLE].draining = True  # GET /readyz answers 503 from now on
        log.info("stopping", grace_seconds=settings.shutdown_grace_seconds)
        return 0
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="alertpilot", description="Alerts become living incident cards in your chat.")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="start alertpilot (the default)")
    test = sub.add_parser("send-test-alert", help="post a sample Alertmanager alert to the running instance")
    test.add_argument("--resolve", metavar="ID", help="resolve the test alert with this id instead of firing a new one")
    test.add_argument("--url", help="alertpilot's base URL (default: from ALERTPILOT_HTTP_HOST/PORT)")
    test.add_argument("--severity", type=severity_arg, default="critical",
                      help="the alert's severity label (default: critical)")
    test.add_argument("--service", type=service_arg, default="demo-api",
                      help="the service it is about: its service and deployment labels (default: demo-api)")
    database = sub.add_parser("db", help="the database schema: upgrade it to this release's, or show where it is")
    database.add_argument("action", choices=("upgrade", "status"),
                          help="upgrade: run the migrations (safe to repeat); status: exit 1 when an upgrade is due")
    check = sub.add_parser("doctor", help="check the configuration and every configured connection (read-only)")
    check.add_argument("--send", action="store_true", help="also post a test message to each WeCom robot")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        if args.command == "doctor":
            raise SystemExit(settings_failed(exc)) from None
        print(f"alertpilot: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.command == "doctor":
        configure_logging(settings.log_format, "debug" if settings.log_level == "debug" else "error")  # the table speaks
        raise SystemExit(asyncio.run(doctor(settings, send=args.send)))
    configure_logging(settings.log_format, settings.log_level)
    if args.command == "db":
        raise SystemExit(asyncio.run(migrate_database(settings, check_only=args.action == "status")))
    if args.command == "send-test-alert":
        raise SystemExit(asyncio.run(send_test_alert(settings, resolve=args.resolve, url=args.url,
                                                     severity=args.severity, service=args.service)))
    raise SystemExit(uvloop.run(serve(settings)) if uvloop is not None else asyncio.run(serve(settings)))
