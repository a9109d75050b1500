"""The source-neutral shape every ingress adapter (Alertmanager, later Grafana and generic JSON) produces."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from services.ports import ChatTarget


@dataclass(frozen=True)
class IncomingAlert:
    fingerprint: str
    status: str  # firing | resolved
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime | None
    ends_at: datetime | None
    generator_url: str = ""
    # Links a source gives beside the generator URL, shown on the card: {"dashboard": …, "panel": …, "silence": …}
    links: dict[str, str] = field(default_factory=dict)

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")


@dataclass(frozen=True)
class AlertBatch:
    source: str
    receiver: str
    group_key: str
    status: str
    alerts: list[IncomingAlert]
    group_labels: dict[str, str] = field(default_factory=dict)
    common_labels: dict[str, str] = field(default_factory=dict)
    common_annotations: dict[str, str] = field(default_factory=dict)
    external_url: str = ""
    truncated_alerts: int = 0
    chats: tuple[ChatTarget, ...] = ()  # the source's own chats for new incidents (empty: by the routes)
    route: str = ""  # the route those chats are (the source's name)


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    new_alerts: int
    repeats: int
    resolved_alerts: int
    incidents_opened: list[int]
    incidents_resolved: list[int]
    incident_ids: list[int]
