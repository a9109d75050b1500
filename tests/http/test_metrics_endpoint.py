"""GET /metrics end to end: alerts taken, repeated and refused, a card sent, the database-wide gauges read at
scrape time (and left out, with alertpilot_database_up 0, when the database cannot be read), and the sample
Prometheus rules naming only what /metrics exports."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess

import yaml
from sqlalchemy import text

from bot.app import JOBS
from tests.harness import ROOT, TOKEN, AppUnderTest, eventually, fixture

RULES = ROOT / "examples" / "prometheus" / "alertpilot-rules.yml"
GENERIC = ROOT / "tests" / "fixtures" / "generic" / "one.json"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def samples(body: str) -> dict[str, float]:
    """Every sample line of a Prometheus text exposition: ``name{labels}`` → value."""
    found: dict[str, float] = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            found[series] = float(value)
    return found


def families(body: str) -> dict[str, str]:
    """The declared families (``# TYPE name kind``)."""
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", body, flags=re.MULTILINE))


async def scrape(app: AppUnderTest) -> dict[str, float]:
    response = await app.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


async def test_metrics_count_alerts_rejections_cards_and_read_the_database(plain_app: AppUnderTest) -> None:
    payload = fixture("01-firing-one-alert.json")
    assert (await plain_app.post_alerts(payload)).json()["new"] == 1
    assert (await plain_app.post_alerts(payload)).json()["repeats"] == 1  # the same alert again
    generic = await plain_app.http.post("/webhooks/generic", content=GENERIC.read_bytes(),
                                        headers={**HEADERS, "Content-Type": "application/json"})
    assert generic.status_code == 200
    # refused: a wrong token, a body that is not JSON, a payload without its version, one over 1 MiB
    assert (await plain_app.post_alerts(payload, token="nope")).status_code == 401
    bad_json = await plain_app.http.post("/webhooks/alertmanager", content=b"{not json",
                                         headers={**HEADERS, "Content-Type": "application/json"})
    assert bad_json.status_code == 400
    invalid = copy.deepcopy(payload)
    invalid.pop("version")
    assert (await plain_app.post_alerts(invalid)).status_code == 400
    huge = copy.deepcopy(payload)
    huge["alerts"][0]["annotations"]["description"] = "x" * (1024 * 1024)
    assert (await plain_app.post_alerts(huge)).status_code == 413

    async def delivered() -> bool:
        outbox = (await plain_app.get("/api/stats")).json()["outbox"]
        return bool(outbox.get("sent")) and not outbox.get("pending") and not outbox.get("sending")

    await eventually(delivered)
    await plain_app.app[JOBS].silence_expiry()
    metrics = await scrape(plain_app)
    stats = (await plain_app.get("/api/stats")).json()

    assert metrics['alertpilot_alerts_received_total{kind="alertmanager"}'] == 2
    assert metrics['alertpilot_alerts_deduplicated_total{kind="alertmanager"}'] == 1
    assert metrics['alertpilot_alerts_received_total{kind="generic"}'] == 1
    assert metrics['alertpilot_alerts_deduplicated_total{kind="generic"}'] == 0
    rejected = {k: v for k, v in metrics.items() if k.startswith("alertpilot_alerts_rejected_total")}
    assert rejected == {
        'alertpilot_alerts_rejected_total{kind="alertmanager",reason="auth"}': 1,
        'alertpilot_alerts_rejected_total{kind="alertmanager",reason="bad_json"}': 1,
        'alertpilot_alerts_rejected_total{kind="alertmanager",reason="invalid"}': 1,
        'alertpilot_alerts_rejected_total{kind="alertmanager",reason="too_large"}': 1,
    }
    # two incidents (one per webhook), both proposals from the rules (no model), every card sent once
    assert metrics['alertpilot_decisions_total{source="rules",fallback_reason="no_model"}'] == 2
    assert metrics['alertpilot_decision_latency_seconds_count{source="rules"}'] == 2
    assert metrics['alertpilot_decision_latency_seconds_bucket{source="rules",le="+Inf"}'] == 2
    assert metrics['alertpilot_outbox_sends_total{channel="console",result="sent"}'] == stats["outbox"]["sent"] >= 2
    assert metrics['alertpilot_outbox_sends_total{channel="console",result="failed"}'] == 0
    assert metrics['alertpilot_outbox_sends_total{channel="console",result="transient_error"}'] == 0
    assert metrics['alertpilot_job_runs_total{name="silence_expiry",outcome="ok"}'] == 1
    # database-wide, read at scrape time
    assert metrics['alertpilot_incidents{status="firing"}'] == 2
    assert metrics['alertpilot_incidents{status="resolved"}'] == 0
    assert metrics['alertpilot_outbox_pending_messages{channel="console"}'] == 0
    assert metrics['alertpilot_outbox_oldest_pending_age_seconds{channel="console"}'] == 0
    assert metrics["alertpilot_executions_running"] == 0
    assert metrics["alertpilot_database_up"] == 1


async def test_metrics_answer_without_the_database(plain_app: AppUnderTest) -> None:
    """The outbox table out of reach: /metrics still answers 200 with the process counters, says the database
    is down and leaves the database-wide gauges out rather than report them stale."""
    await plain_app.post_alerts(fixture("01-firing-one-alert.json"))
    before = await scrape(plain_app)
    assert before["alertpilot_database_up"] == 1 and 'alertpilot_incidents{status="firing"}' in before
    async with plain_app.deps.db.write() as tx:
        await tx.session.execute(text("ALTER TABLE outbox RENAME TO outbox_away"))
    try:
        metrics = await scrape(plain_app)
    finally:
        async with plain_app.deps.db.write() as tx:
            await tx.session.execute(text("ALTER TABLE outbox_away RENAME TO outbox"))
    assert metrics["alertpilot_database_up"] == 0
    assert metrics['alertpilot_alerts_received_total{kind="alertmanager"}'] == 1
    assert not [k for k in metrics if k.startswith(("alertpilot_incidents", "alertpilot_outbox_pending",
                                                    "alertpilot_outbox_oldest", "alertpilot_executions_running"))]
    assert (await scrape(plain_app))["alertpilot_database_up"] == 1  # back at the next scrape


def rule_metric_names(rules: dict) -> set[str]:
    """The alertpilot metric families a rules file queries (histogram series named by their family)."""
    names: set[str] = set()
    for group in rules["groups"]:
        for rule in group["rules"]:
            for name in re.findall(r"alertpilot_[a-z_]+", rule["expr"]):
                names.add(re.sub(r"_(bucket|sum|count)$", "", name))
    return names


async def test_sample_rules_query_only_exported_metrics(plain_app: AppUnderTest) -> None:
    rules = yaml.safe_load(RULES.read_text())
    exported = families((await plain_app.http.get("/metrics")).text)
    names = rule_metric_names(rules)
    assert {"alertpilot_outbox_oldest_pending_age_seconds", "alertpilot_outbox_sends_total",
            "alertpilot_ai_requests_total", "alertpilot_decisions_total", "alertpilot_alerts_rejected_total",
            "alertpilot_job_runs_total", "alertpilot_database_up"} <= names
    assert names - set(exported) == set()
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["alert"].startswith("Alertpilot") and rule["annotations"]["summary"], rule
    promtool = shutil.which("promtool")
    if promtool is not None:  # the syntax, PromQL and templates as Prometheus reads them
        checked = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_rule_metric_names_strip_histogram_suffixes() -> None:
    rules = {"groups": [{"rules": [{"expr": "histogram_quantile(0.9, rate(alertpilot_decision_latency_seconds_bucket[5m]))"
                                           " > alertpilot_x_count + alertpilot_y_sum"}]}]}
    assert rule_metric_names(rules) == {"alertpilot_decision_latency_seconds", "alertpilot_x", "alertpilot_y"}
