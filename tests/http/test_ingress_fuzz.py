"""Random JSON at the alert webhooks never yields a 5xx: every body is stored (2xx) or refused with a 4xx
and a reason. Seeded, so a failure is reproducible; mutations of the real fixtures reach deep into the
parsers, and the ingest path behind them (grouping, storage) sees whatever the parsers accept."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest

from tests.harness import ROOT, TOKEN, AppUnderTest

FIXTURES = ROOT / "tests" / "fixtures"
ODD = [None, True, 0, -1, 2**63, 1.5e308, "", " ", "\x00", "\ud800", "x" * 5000, "firing", "resolved",
       "2026-11-24T05:06:48Z", "0001-01-01T00:00:00Z", "javascript:alert(1)", "https://a.example/x", [], {}, [1], {"a": 1}]


def mutate(value: Any, rng: random.Random, depth: int = 0) -> Any:
    """The value with a few random changes: a field replaced, removed or added, at any depth."""
    if isinstance(value, dict) and value and rng.random() < 0.8:
        key = rng.choice(list(value))
        choice = rng.random()
        if choice < 0.3:
            value.pop(key)
        elif choice < 0.6 or depth > 4:
            value[key] = rng.choice(ODD)
        else:
            value[key] = mutate(value[key], rng, depth + 1)
        if rng.random() < 0.2:
            value[rng.choice(["labels", "status", "alerts", "title", "x", "startsAt"])] = rng.choice(ODD)
        return value
    if isinstance(value, list) and value and rng.random() < 0.8:
        index = rng.randrange(len(value))
        value[index] = mutate(value[index], rng, depth + 1) if rng.random() < 0.7 else rng.choice(ODD)
        return value
    return rng.choice(ODD)


@pytest.mark.parametrize(
    ("path", "fixtures"),
    [
        ("/webhooks/grafana", ["grafana/firing.json", "grafana/resolved.json", "grafana/multi.json"]),
        ("/webhooks/generic", ["generic/one.json", "generic/list.json"]),
    ],
)
async def test_random_bodies_never_get_a_server_error(plain_app: AppUnderTest, path: str, fixtures: list[str]) -> None:
    rng = random.Random(f"{path}-20261124")
    bases = [json.loads((FIXTURES / name).read_text()) for name in fixtures]
    statuses = []
    for _ in range(150):
        body = mutate(copy.deepcopy(rng.choice(bases)), rng) if rng.random() < 0.85 else rng.choice(ODD)
        response = await plain_app.http.post(path, content=json.dumps(body), headers={
            "Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
        assert response.status_code < 500, (body, response.text)
        if response.status_code >= 400:
            assert response.json()["error"]  # a reason, always
        statuses.append(response.status_code)
    assert 200 in statuses and 400 in statuses  # both sides were exercised
