"""`alertpilot send-test-alert`: post a sample Alertmanager notification to the running instance."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

import httpx

from bot.ingest_token import stored_ingest_token
from bot.settings import Settings


def sample_payload(test_id: str, *, resolved: bool, now: datetime) -> dict[str, Any]:
    labels = {
        "alertname": "KubePodCrashLooping",
        "severity": "critical",
        "namespace": "demo",
        "deployment": "demo-api",
        "pod": f"demo-api-{test_id}",
        "alertpilot_test": test_id,
    }
    annotations = {
        "summary": "demo-api is crash looping (alertpilot test alert)",
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


async def send_test_alert(settings: Settings, *, resolve: str | None, url: str | None) -> int:
    token = await stored_ingest_token(settings)
    if token is None:
        print("alertpilot: no ingest token yet: start alertpilot once (make run) or set ALERTPILOT_INGEST_TOKEN")
        return 2
    host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::", "") else settings.http_host
    base = (url or f"http://{host}:{settings.http_port}").rstrip("/")
    test_id = resolve or secrets.token_hex(3)
    payload = sample_payload(test_id, resolved=resolve is not None, now=datetime.now(UTC))
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
    if resolve:
        print(f"test alert {test_id} resolved ({incidents}); its card will say so.")
    else:
        print(f"test alert {test_id} fired: {incidents}. The card appears in the chat (or the console) in a moment.")
        print(f"resolve it with: alertpilot send-test-alert --resolve {test_id}")
    return 0
