"""GET /healthz (liveness) and GET /readyz (readiness: 503 once SIGTERM started the drain)."""

from __future__ import annotations

from pathlib import Path

from bot.app import LIFECYCLE
from tests.harness import app_settings, start_app


async def test_readyz_is_ready_while_serving_and_503_while_draining(tmp_path: Path) -> None:
    app = await start_app(app_settings(tmp_path))
    try:
        ready = await app.http.get("/readyz")
        assert ready.status_code == 200 and ready.json() == {"status": "ready", "telegram": "not configured"}
        app.app[LIFECYCLE].draining = True  # what serve() does on SIGTERM
        draining = await app.http.get("/readyz")
        assert draining.status_code == 503 and draining.json()["status"] == "draining"
        assert (await app.http.get("/healthz")).status_code == 200  # alive all the same: no restart
    finally:
        await app.stop()

