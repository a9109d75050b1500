"""The remediation policy applied to every proposal, whoever made it (rules, playbook, AI model, a person):
the command is parsed, scored and tiered by services/safety.py before anyone can approve it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from services.consensus import voted_commands
from services.ports import ProposalDraft
from services.safety import REQUIRED_APPROVALS, Assessment, NamespacePolicy, Tier, assess, is_trusted

TIER_ORDER = (Tier.AUTO, Tier.ONE, Tier.TWO, Tier.BLOCKED)


@dataclass(frozen=True)
class RemediationPolicy:
    namespaces: NamespacePolicy
    allowed_tools: frozenset[str]
    auto_enabled: bool
    min_confidence: float

    def assess(self, draft: ProposalDraft, *, playbook_runs: int = 0, playbook_successes: int = 0) -> Assessment:
        """The proposal's assessment. A playbook's later steps are assessed too: the riskiest step decides
        the tier (a blocked step blocks the whole proposal)."""
        trusted = is_trusted(
            source=draft.source,
            confidence=draft.confidence,
            min_confidence=self.min_confidence,
            playbook_runs=playbook_runs,
            playbook_successes=playbook_successes,
        )
        assessments = [self.assess_command(command, trusted=trusted) for command in (draft.command, *draft.steps)]
        chosen = max(assessments, key=lambda a: (TIER_ORDER.index(a.tier), a.score.value))
        return chosen if draft.consensus is None else self._with_consensus(chosen, draft.consensus)

    def _with_consensus(self, chosen: Assessment, record: dict[str, Any]) -> Assessment:
        """Disagreement never lowers safety: the tier is that of the most dangerous proposal that got a vote
        (a dissent the policy would block outright raises it to two approvers: the blocked command itself is
        never what runs), and auto-remediation needs every analysis to agree."""
        tier = chosen.tier
        if tier is Tier.BLOCKED:
            return chosen
        for command in voted_commands(record):
            dissent = self.assess_command(command).tier
            dissent = Tier.TWO if dissent is Tier.BLOCKED else dissent
            tier = max(tier, dissent, key=TIER_ORDER.index)
        if tier is Tier.AUTO and record.get("agree") != record.get("of"):
            tier = Tier.ONE
        if tier is chosen.tier:
            return chosen
        return replace(chosen, tier=tier, required_approvals=REQUIRED_APPROVALS[tier])

    def assess_command(self, command: str, *, trusted: bool = False) -> Assessment:
        """One command's assessment (the executor checks each step again just before running it)."""
        return assess(command, policy=self.namespaces, allowed_tools=self.allowed_tools, auto_enabled=self.auto_enabled,
                      trusted=trusted)

    def vote_tiers(self, draft: ProposalDraft, final: Assessment) -> dict[str, Any] | None:
        """The consensus record as the proposal keeps it (what the card and Details show): each vote with its
        tier and blast score, and ``raised`` when the tier is a dissent's rather than the agreed command's."""
        if draft.consensus is None:
            return None
        votes = []
        for vote in draft.consensus.get("votes", []):
            if isinstance(vote.get("command"), str):
                assessment = self.assess_command(vote["command"])
                vote = {**vote, "tier": assessment.tier.value, "blast_score": assessment.score.value}
            votes.append(vote)
        own = self.assess(replace(draft, consensus=None))
        return {**draft.consensus, "votes": votes, "raised": final.tier is not own.tier}


def assessment_fields(assessment: Assessment) -> dict[str, Any]:
    """The assessment as Proposal columns."""
    spec = assessment.spec
    rollback = None if spec is None else (spec.rollback.command or spec.rollback.description)
    return {
        "blast_score": assessment.score.value,
        "tier": assessment.tier.value,
        "required_approvals": assessment.required_approvals,
        "score_reasons": list(assessment.score.reasons),
        "blocked_reason": assessment.blocked_reason,
        "rollback_plan": rollback,
        "spec": None if spec is None else spec.to_json(),
    }
