"""GitOps review issues for the two-approver tier: after such a proposal is stored, an issue with the plan
is opened on Gitea/GitHub (services/gitops.py), its link goes on the card, and a failure is noted in the
thread. Chat approval never waits for it or depends on it."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from services.gitops import GitOpsError, GitOpsReviewer
from services.incidents import incident_ref
from services.notify import Notifier
from services.queries import IncidentQueries
from storage.clock import Clock
from storage.db import Database

log = structlog.get_logger(__name__)


class GitOpsReviews:
    def __init__(self, db: Database, reviewer: GitOpsReviewer, queries: IncidentQueries, notifier: Notifier,
                 clock: Clock) -> None:
        self._db, self._reviewer, self._queries, self._notify, self._now = db, reviewer, queries, notifier, clock
        self._tasks: set[asyncio.Task[None]] = set()

    def request(self, incident_id: int, proposal_id: int) -> None:
        """Open the review in the background (call after the proposal's transaction has committed)."""
        task = asyncio.create_task(self.open(incident_id, proposal_id), name=f"gitops-review-{proposal_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def open(self, incident_id: int, proposal_id: int) -> None:
        ref = incident_ref(incident_id)
        body = await self._queries.api_incident(incident_id)
        proposal = body.get("decision") or {}
        if proposal.get("id") != proposal_id:
            return  # replaced before the review was opened
        incident = {**body, "summary": (body.get("alerts") or [{}])[0].get("annotations", {}).get("summary", "")}
        try:
            url = await self._reviewer.open_review(ref=ref, incident=incident, proposal=proposal)
        except GitOpsError as exc:
            await self._note(incident_id, "review_failed", {"ref": ref, "reason": exc.reason[:300]})
            return
        now = self._now()
        async with self._db.write() as tx:
            await tx.proposals.set_review_url(proposal_id, url)
            await self._notify.card(tx, incident_id, now)
            await self._notify.thread(tx, incident_id, "review_opened", {"ref": ref, "url": url}, now,
                                      dedup_key=f"review:{proposal_id}")
        self._notify.wake()
        log.info("gitops_review_linked", incident_id=incident_id, proposal_id=proposal_id)

    async def _note(self, incident_id: int, template: str, context: dict[str, str]) -> None:
        now = self._now()
        async with self._db.write() as tx:
            await self._notify.thread(tx, incident_id, template, context, now)
        self._notify.wake()

    async def wait(self) -> None:
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._tasks, return_exceptions=True)
