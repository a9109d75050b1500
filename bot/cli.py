"""`alertpilot send-test-alert`: post a sample Alertmanager notification to the running instance."""

from __future__ import annotations

import argparse
import re
import secrets
from datetime import UTC, datetime
from typing import Any

import httpx

from bot.chat.wecom import mask_key, robot_id
from bot.ingest_token import stored_ingest_token
from bot.settings import Settings
from services.ports import ChatTarget
from services.routing import route_for

SEVERITY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")  # critical, warning, P1, sev.2
# a Kubernetes name (it also becomes the deployment and pod names): lowercase letters, digits and "-"
SERVICE = re.compile(r"[a-z0-9]([a-z0-9-]{0,48}[a-z0-9])?")


def severity_arg(value: str) -> str:
    """argparse type of --severity: a plain label value such as critical, warning or P1."""
    if not SEVERITY.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{value[:40]!r} is not a severity: 1-32 letters, digits, '_', '.' or '-' (critical, warning, P1)")
    return value


def service_arg(value: str) -> str:
    """argparse type of --service: a Kubernetes-style name (it names the deployment and the pod too)."""
    if not SERVICE.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{value[:40]!r} is not a service name: 1-50 lowercase letters, digits and '-', starting and ending "
            "with a letter or digit (api, payments-db)")
    return value


def sample_labels(test_id: str, *, severity: str = "critical", service: str = "demo-api") -> dict[str, str]:
    """The sample alert's labels: the incident's service comes from ``service`` (services.incidents.SERVICE_LABELS)."""
    return {
        "alertname": "KubePodCrashLooping",
        "severity": severity,
        "namespace": "demo",
        "service": service,
        "deployment": service,
        "pod": f"{service}-{test_id}",
        "alertpilot_test": test_id,
    }


def sample_payload(
    test_id: str, *, resolved: bool, now: datetime, severity: str = "critical", service: str = "demo-api"
) -> dict[str, Any]:
    labels = sample_labels(test_id, severity=severity, service=service)
    annotations = {
        "summary": f"{service} is crash looping (alertpilot test alert)",
        "description": "Sent by `alertpilot send-test-alert`: the container restarted 5 times in 10 minutes.",
    }
    status = "resolved" if resolved else "firing"
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="KubePodCrashLooping", alertpilot_test="{test_id}"}}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "alertpilot-test",
        "groupLabels": {"alertname": "KubePodCrashLooping", "alertpilot_test": test_id},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "http://alertmanager.invalid",
        "alerts": [
            {
                "status": status,
                "labels": labels,
                "annotations": annotations,
                "startsAt": stamp,
                "endsAt": stamp if resolved else "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.invalid/graph",
                "fingerprint": f"alertpilot-test-{test_id}",
            }
        ],
    }


def card_chats(settings: Settings, labels: dict[str, str]) -> str:
    """Where this configuration posts the card of an incident with ``labels``: the first matching route's chats
    (ALERTPILOT_ROUTES), else the card chats, else the console. WeCom robots by masked key, never the key."""
    robots = {robot_id(key): mask_key(key) for key in settings.wecom_keys}

    def named(chat: ChatTarget) -> str:
        if chat.channel == "telegram":
            return f"Telegram chat {chat.chat_id}"
        if chat.channel == "wecom":
            return f"WeCom robot {robots.get(chat.chat_id, chat.chat_id)}"
        return f"{chat.channel}:{chat.chat_id}"

    route = route_for(settings.route_list, labels)
    if route is not None:
        matchers = " ".join(f"{k}={v}" for k, v in route.matchers.items())
        return f"{', '.join(named(c) for c in route.chats)} (route {route.name}: {matchers})"
    chats = []
    if settings.telegram_token is not None and settings.telegram_chat_id is not None:
        chats.append(named(ChatTarget("telegram", str(settings.telegram_chat_id))))
    chats += [named(ChatTarget("wecom", robot_id(key))) for key in settings.wecom_keys]
    return ", ".join(chats) or "the console of the running alertpilot (no chat configured)"


async def send_test_alert(
    settings: Settings, *, resolve: str | None, url: str | None, severity: str = "critical", service: str = "demo-api"
) -> int:
    token = await stored_ingest_token(settings)
    if token is None:
        print("alertpilot: no ingest token yet: start alertpilot once (make run) or set ALERTPILOT_INGEST_TOKEN")
        return 2
    host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::", "") else settings.http_host
    base = (url or f"http://{host}:{settings.http_port}").rstrip("/")
    test_id = resolve or secrets.token_hex(3)
    payload = sample_payload(test_id, resolved=resolve is not None, now=datetime.now(UTC), severity=severity,
                             service=service)
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.post(
                f"{base}/webhooks/alertmanager", json=payload, headers={"Authorization": f"Bearer {token}"}
            )
    except httpx.HTTPError as exc:
        print(f"alertpilot: cannot reach {base}: {exc} (is `make run` running?)")
        return 1
    if response.status_code != 200:
        print(f"alertpilot: {base} answered {response.status_code}: {response.text[:300]}")
        return 1
    body = response.json()
    incidents = ", ".join(body.get("incidents", [])) or "—"
    where = card_chats(settings, sample_labels(test_id, severity=severity, service=service))
    if resolve:
        print(f"test alert {test_id} resolved ({incidents}); its card in {where} will say so.")
        return 0
    flags = "".join(f" --{name} {value}" for name, value, default in (
        ("severity", severity, "critical"), ("service", service, "demo-api")) if value != default)
    print(f"test alert {test_id} fired: {incidents} (severity {severity}, service {service}).")
    print(f"the card appears in {where} in a moment.")
    print(f"resolve it with: alertpilot send-test-alert --resolve {test_id}{flags}")
    return 0
