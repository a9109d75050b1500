"""The remediation policy applied to every proposal, whoever made it (rules, playbook, AI model, a person):
the command is parsed, scored and tiered by services/safety.py before anyone can approve it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.ports import ProposalDraft
from services.safety import Assessment, NamespacePolicy, Tier, assess, is_trusted

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
        return max(assessments, key=lambda a: (TIER_ORDER.index(a.tier), a.score.value))

    def assess_command(self, command: str, *, trusted: bool = False) -> Assessment:
        """One command's assessment (the executor checks each step again just before running it)."""
        return assess(command, policy=self.namespaces, allowed_tools=self.allowed_tools, auto_enabled=self.auto_enabled,
                      trusted=trusted)


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
