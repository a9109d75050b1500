"""Incidents for the decision and assistant service tests: a crash-looping api in prod by default."""

from __future__ import annotations

import copy
from typing import Any

from services.sources.alertmanager import parse_alertmanager
from tests.harness import fixture
from tests.service.conftest import World

PLAYBOOK_YAML = """
playbooks:
  - name: disk-cleanup
    description: Restart the writer so it releases deleted log files
    root_cause: "{service} filled its disk with logs"
    symptoms:
      alertnames: [DiskFull]
    steps:
      - name: restart
        command: kubectl -n {namespace} rollout restart deployment/{service}
      - name: wait
        command: kubectl -n {namespace} rollout status deployment/{service}
"""


def alert_payload(alertname: str = "KubePodCrashLooping", **annotations: str) -> dict[str, Any]:
    """Fixture 01 renamed to ``alertname`` (own fingerprint and group: its own incident) on api in prod."""
    payload = copy.deepcopy(fixture("01-firing-one-alert.json"))
    for alert in payload["alerts"]:
        alert["labels"]["alertname"] = alertname
        alert["labels"].update(namespace="prod", deployment="api", service="api")
        alert["annotations"].update(annotations)
        alert["fingerprint"] = f"{alertname.lower()}{alert['fingerprint']}"[:16]
    payload["commonLabels"].update(alertname=alertname, namespace="prod", deployment="api", service="api")
    payload["groupKey"] = f"{{}}:{{alertname=\"{alertname}\"}}"
    return payload


async def open_incident(world: World, payload: dict[str, Any] | None = None) -> int:
    result = await world.incidents.ingest(parse_alertmanager(payload or alert_payload()))
    await world.settle()
    return result.incidents_opened[0]
