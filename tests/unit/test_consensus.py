"""services/consensus.py (the panel, comparing proposals, the tally) and how services/policy.py applies a
consensus record: disagreement never lowers the tier, auto-remediation needs every analysis to agree."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from services.consensus import MAX_PANEL, PanelMember, Vote, command_key, parse_panel, tally, voted_commands
from services.policy import RemediationPolicy
from services.ports import ProposalDraft
from services.safety import REQUIRED_APPROVALS, NamespacePolicy, Tier

KUBECTL = frozenset({"kubectl"})
POLICY = RemediationPolicy(namespaces=NamespacePolicy(), allowed_tools=KUBECTL, auto_enabled=True, min_confidence=0.65)

RESTART = "kubectl -n prod rollout restart deployment/api"  # one approver (blast 12)
RESTART_AGAIN = "kubectl rollout restart deploy api --namespace=prod"  # the same remediation, written differently
SCALE_TO_ZERO = "kubectl -n prod scale deployment/api --replicas=0"  # two approvers (blast 53)
DELETE_DEPLOYMENT = "kubectl -n prod delete deployment api"  # two approvers (blast 90)
DELETE_POD = "kubectl -n default delete pod db-0"  # auto when trusted and auto-remediation is on (blast 10)
DELETE_NAMESPACE = "kubectl delete namespace prod"  # blocked by a hard rule
SHELL = "rm -rf /var/lib/data"  # blocked: not an allowed tool, and a hard rule

A, B, C = PanelMember("model-a"), PanelMember("model-b"), PanelMember("model-c")


def draft(command: str, *, confidence: float | None = 0.9, model: str = "m", root_cause: str = "oom") -> ProposalDraft:
    return ProposalDraft(source="ai", root_cause=root_cause, command=command, risk="medium", reasoning="because",
                         model=model, confidence=confidence)


def vote(member: PanelMember, command: str | None, *, confidence: float | None = 0.9, error: str | None = None) -> Vote:
    if command is None:
        return Vote(member, error=error or "timeout: no answer")
    return Vote(member, draft=draft(command, confidence=confidence, model=member.model))


def chosen(*votes: Vote) -> ProposalDraft:
    result = tally(votes, allowed_tools=KUBECTL)
    assert result is not None
    return result.chosen


# --- parse_panel -------------------------------------------------------------------------------------


def test_plain_model_names_are_single_members_without_a_sample_number() -> None:
    panel = parse_panel("model-a, model-b ,qwen2.5:7b")
    assert panel == (PanelMember("model-a"), PanelMember("model-b"), PanelMember("qwen2.5:7b"))
    assert [m.label for m in panel] == ["model-a", "model-b", "qwen2.5:7b"]
    assert all(m.base_url is None and m.sample == 0 for m in panel)


def test_samples_of_one_model_are_numbered_from_one() -> None:
    panel = parse_panel("m*3")
    assert [(m.model, m.sample, m.base_url) for m in panel] == [("m", 1, None), ("m", 2, None), ("m", 3, None)]
    assert [m.label for m in panel] == ["m #1", "m #2", "m #3"]


def test_empty_entries_are_ignored_and_samples_mix_with_single_models() -> None:
    panel = parse_panel(" a*2, ,b,")
    assert [m.label for m in panel] == ["a #1", "a #2", "b"]


def test_a_model_at_its_own_url_keeps_the_url_without_a_trailing_slash() -> None:
    panel = parse_panel("m@http://127.0.0.1:9/v1, other@https://models.example/v1/")
    assert panel == (PanelMember("m", "http://127.0.0.1:9/v1"), PanelMember("other", "https://models.example/v1"))
    assert panel[0].label == "m"  # the URL is not part of the label


def test_samples_of_a_model_at_a_url() -> None:
    panel = parse_panel("m@http://127.0.0.1:9/v1*2")
    assert panel == (PanelMember("m", "http://127.0.0.1:9/v1", 1), PanelMember("m", "http://127.0.0.1:9/v1", 2))


def test_a_model_name_may_contain_an_at_sign_that_is_not_a_url() -> None:
    panel = parse_panel("claude@2024,claude@2024@http://127.0.0.1:9/v1")
    assert panel == (PanelMember("claude@2024"), PanelMember("claude@2024", "http://127.0.0.1:9/v1"))


def test_the_same_model_at_two_servers_is_not_a_duplicate() -> None:
    panel = parse_panel("m@http://127.0.0.1:9/v1,m@http://127.0.0.1:10/v1,m")
    assert [m.base_url for m in panel] == ["http://127.0.0.1:9/v1", "http://127.0.0.1:10/v1", None]


def test_the_empty_setting_is_no_panel() -> None:
    assert parse_panel("") == ()
    assert parse_panel(" , ") == ()


def test_seven_analyses_are_the_most() -> None:
    assert len(parse_panel(f"m*{MAX_PANEL}")) == MAX_PANEL == 7
    assert len(parse_panel("a*3,b*3,c")) == 7


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("only-one", "at least two"),
        ("m*1", "at least two"),
        ("a*4,b*4", "at most 7"),
        ("a,b,c,d,e,f,g,h", "at most 7"),
        ("a,a", "listed twice"),
        ("a*2,b,a*2", "listed twice"),
        ("m@http://127.0.0.1:9/v1,m@http://127.0.0.1:9/v1/", "listed twice"),
        ("a*0,b", "between 1 and 7"),
        ("a*9", "between 1 and 7"),
        ("a b,c", "not a model entry"),
        ("a*x,b", "not a model entry"),
        ("@http://127.0.0.1:9/v1,b", "not a model entry"),
        ("a**2,b", "not a model entry"),
        ("m@htp://127.0.0.1:9/v1,b", "http\\(s\\) URL"),
        ("m@ftp://host/v1,b", "http\\(s\\) URL"),
    ],
)
def test_bad_panels_say_what_is_wrong(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_panel(value)


def test_a_bad_entry_is_named_in_the_error() -> None:
    with pytest.raises(ValueError) as caught:
        parse_panel("good,b@d,w i t h spaces")
    assert "'w i t h spaces'" in str(caught.value)


# --- command_key --------------------------------------------------------------------------------------


def key(command: str) -> tuple[str, ...]:
    return command_key(command, allowed_tools=KUBECTL)


def test_resource_spellings_are_the_same_remediation() -> None:
    forms = ["kubectl -n prod rollout restart deploy/api", "kubectl -n prod rollout restart deployment api",
             "kubectl -n prod rollout restart deployments/api", RESTART]
    assert {key(f) for f in forms} == {("kubectl", "rollout restart", "deployment/api", "prod")}


def test_namespace_flag_spellings_are_the_same_remediation() -> None:
    assert key("kubectl -n prod rollout restart deployment/api") == key(
        "kubectl rollout restart deployment/api --namespace=prod") == key(
        "kubectl rollout restart deployment/api --namespace prod")


def test_different_replica_counts_are_the_same_remediation() -> None:
    assert key("kubectl -n prod scale deployment/api --replicas=3") == key(
        "kubectl scale deployment/api --replicas=5 -n prod")


@pytest.mark.parametrize(
    "other",
    [
        "kubectl -n staging rollout restart deployment/api",  # another namespace
        "kubectl rollout restart deployment/api",  # no namespace
        "kubectl -n prod rollout undo deployment/api",  # another verb
        "kubectl -n prod rollout restart deployment/web",  # another resource
        "kubectl -n prod rollout restart statefulset/api",  # another kind
        "kubectl rollout restart deployment/api -A",  # every namespace
    ],
)
def test_another_namespace_verb_or_resource_is_another_remediation(other: str) -> None:
    assert key(other) != key(RESTART)


def test_all_namespaces_is_its_own_namespace() -> None:
    assert key("kubectl get pods -A")[-1] == "*"


def test_an_unparseable_command_is_compared_as_normalised_text() -> None:
    assert key("rm -rf /var/lib/data") == ("text", "rm -rf /var/lib/data")
    assert key("  RM   -rf\t/var/lib/data ") == key("rm -rf /var/lib/data")
    assert key("rm -rf /var/lib/other") != key("rm -rf /var/lib/data")
    assert key("kubectl -n prod rollout restart deployment/api; rm -rf /")[0] == "text"


# --- tally --------------------------------------------------------------------------------------------


def test_three_of_three_agree_even_when_written_differently() -> None:
    votes = [vote(A, RESTART, confidence=0.9), vote(B, RESTART_AGAIN, confidence=0.7), vote(C, RESTART, confidence=0.8)]
    result = tally(votes, allowed_tools=KUBECTL)
    assert result is not None
    assert (result.agree, result.of, result.full) == (3, 3, True)
    assert result.dissenting == () and result.silent == ()
    assert result.chosen.command == RESTART and result.chosen.model == "model-a"  # the first agreeing member's
    assert result.chosen.confidence == 0.7  # the lowest of the agreeing confidences
    record = result.chosen.consensus
    assert record is not None and record["agree"] == 3 and record["of"] == 3
    assert [v["member"] for v in record["votes"]] == ["model-a", "model-b", "model-c"]
    assert all(v["agrees"] for v in record["votes"])
    assert record["votes"][1]["command"] == RESTART_AGAIN  # each vote keeps its own wording
    assert voted_commands(record) == []


def test_two_of_three_lists_the_dissent() -> None:
    votes = [vote(A, SCALE_TO_ZERO, confidence=0.5), vote(B, RESTART, confidence=0.9),
             vote(C, RESTART_AGAIN, confidence=0.8)]
    result = tally(votes, allowed_tools=KUBECTL)
    assert result is not None
    assert (result.agree, result.of, result.full) == (2, 3, False)
    assert result.chosen.command == RESTART and result.chosen.model == "model-b"
    assert result.chosen.confidence == 0.8  # the dissent's 0.5 does not count
    assert [v.member for v in result.agreeing] == [B, C]
    assert [v.member for v in result.dissenting] == [A]
    record = result.chosen.consensus
    assert record is not None
    assert [(v["member"], v["agrees"]) for v in record["votes"]] == [("model-a", False), ("model-b", True),
                                                                      ("model-c", True)]
    dissent = record["votes"][0]
    assert dissent["command"] == SCALE_TO_ZERO and dissent["confidence"] == 0.5 and dissent["model"] == "model-a"
    assert dissent["root_cause"] == "oom" and dissent["risk"] == "medium" and dissent["tool_calls"] == 0
    assert voted_commands(record) == [SCALE_TO_ZERO]


def test_all_different_the_first_member_wins_with_one_vote() -> None:
    votes = [vote(A, RESTART), vote(B, SCALE_TO_ZERO), vote(C, DELETE_POD)]
    result = tally(votes, allowed_tools=KUBECTL)
    assert result is not None
    assert (result.agree, result.of) == (1, 3)
    assert result.chosen.command == RESTART and result.chosen.model == "model-a"
    assert [v.member for v in result.dissenting] == [B, C]
    assert voted_commands(result.chosen.consensus) == [SCALE_TO_ZERO, DELETE_POD]


def test_a_tie_goes_to_the_group_of_the_member_listed_first() -> None:
    d = PanelMember("model-d")
    votes = [vote(A, SCALE_TO_ZERO), vote(B, RESTART), vote(C, RESTART), vote(d, SCALE_TO_ZERO)]
    result = tally(votes, allowed_tools=KUBECTL)
    assert result is not None and result.chosen.command == SCALE_TO_ZERO and result.agree == 2
    assert [v.member for v in result.agreeing] == [A, d]


def test_the_larger_group_wins_over_the_first_member() -> None:
    votes = [vote(A, SCALE_TO_ZERO), vote(B, RESTART), vote(C, RESTART_AGAIN)]
    assert chosen(*votes).command == RESTART


def test_failed_votes_count_in_of_and_are_silent_with_their_error() -> None:
    votes = [vote(A, None, error="timeout: no answer within the 30 s decision SLA"), vote(B, RESTART),
             vote(C, RESTART)]
    result = tally(votes, allowed_tools=KUBECTL)
    assert result is not None
    assert (result.agree, result.of, result.full) == (2, 3, False)
    assert [v.member for v in result.silent] == [A] and result.dissenting == ()
    assert result.chosen.model == "model-b"
    record = result.chosen.consensus
    assert record is not None
    assert record["votes"][0] == {"member": "model-a", "agrees": False,
                                  "error": "timeout: no answer within the 30 s decision SLA"}
    assert voted_commands(record) == []  # a silent member proposed nothing


def test_a_silent_vote_without_an_error_says_no_answer() -> None:
    record = chosen(Vote(A), vote(B, RESTART)).consensus
    assert record is not None and record["votes"][0]["error"] == "no answer"


def test_no_answers_is_no_consensus() -> None:
    assert tally([vote(A, None), vote(B, None), vote(C, None)], allowed_tools=KUBECTL) is None
    assert tally([], allowed_tools=KUBECTL) is None


def test_the_chosen_confidence_ignores_agreeing_votes_without_one() -> None:
    assert chosen(vote(A, RESTART, confidence=None), vote(B, RESTART, confidence=0.6)).confidence == 0.6
    assert chosen(vote(A, RESTART, confidence=None), vote(B, RESTART, confidence=None)).confidence is None


def test_the_chosen_draft_is_the_lead_vote_with_the_record_added() -> None:
    lead = vote(A, RESTART, confidence=0.9)
    result = chosen(lead, vote(B, RESTART, confidence=0.9))
    assert lead.draft is not None and lead.draft.consensus is None  # the vote itself is not changed
    assert replace(result, consensus=None) == lead.draft


def test_a_vote_records_how_many_tool_calls_its_analysis_made() -> None:
    evidence = ({"tool": "kubectl_logs", "ok": True}, {"tool": "prometheus_query", "ok": True})
    investigated = Vote(A, draft=replace(draft(RESTART), evidence=evidence))
    record = chosen(investigated, vote(B, RESTART)).consensus
    assert record is not None and [v["tool_calls"] for v in record["votes"]] == [2, 0]


def test_voted_commands_tolerates_missing_or_odd_records() -> None:
    assert voted_commands(None) == []
    assert voted_commands({}) == []
    assert voted_commands({"votes": ["junk", {"agrees": False}, {"agrees": False, "command": 3},
                                     {"agrees": False, "command": "x"}, {"agrees": True, "command": "y"}]}) == ["x"]


# --- the policy with a consensus record ---------------------------------------------------------------


def consensus_draft(*commands: str | None, confidence: float = 0.9) -> ProposalDraft:
    """The tallied proposal of a panel where ``commands[i]`` is member i's proposal (None: no answer)."""
    members = [PanelMember(f"model-{i}") for i in range(len(commands))]
    return chosen(*(vote(m, c, confidence=confidence) for m, c in zip(members, commands, strict=True)))


def test_the_commands_used_here_have_the_tiers_the_tests_rely_on() -> None:
    trusted = {c: POLICY.assess_command(c, trusted=True).tier for c in
               (RESTART, SCALE_TO_ZERO, DELETE_DEPLOYMENT, DELETE_POD, DELETE_NAMESPACE, SHELL)}
    assert trusted == {RESTART: Tier.ONE, SCALE_TO_ZERO: Tier.TWO, DELETE_DEPLOYMENT: Tier.TWO, DELETE_POD: Tier.AUTO,
                       DELETE_NAMESPACE: Tier.BLOCKED, SHELL: Tier.BLOCKED}


@pytest.mark.parametrize("dissent", [SCALE_TO_ZERO, DELETE_DEPLOYMENT])
def test_a_two_approver_dissent_raises_a_one_approver_proposal_to_two(dissent: str) -> None:
    proposal = consensus_draft(RESTART, RESTART, dissent)
    assert proposal.command == RESTART
    assessment = POLICY.assess(proposal)
    assert assessment.tier is Tier.TWO and assessment.required_approvals == 2 == REQUIRED_APPROVALS[Tier.TWO]
    own = POLICY.assess(replace(proposal, consensus=None))
    assert own.tier is Tier.ONE and own.required_approvals == 1
    assert assessment.score == own.score  # the command that would run is still the agreed one
    assert assessment.spec == own.spec


@pytest.mark.parametrize("dissent", [DELETE_NAMESPACE, SHELL])
def test_a_blocked_dissent_raises_to_two_approvers_without_blocking(dissent: str) -> None:
    proposal = consensus_draft(RESTART, dissent, RESTART)
    assessment = POLICY.assess(proposal)
    assert assessment.tier is Tier.TWO and assessment.required_approvals == 2
    assert assessment.blocked_reason is None


def test_full_agreement_on_an_auto_tier_command_stays_auto() -> None:
    proposal = consensus_draft(DELETE_POD, DELETE_POD, DELETE_POD)
    assessment = POLICY.assess(proposal)
    assert assessment.tier is Tier.AUTO and assessment.required_approvals == 0


def test_partial_agreement_on_an_auto_tier_command_needs_one_approver() -> None:
    silent = POLICY.assess(consensus_draft(DELETE_POD, DELETE_POD, None))
    assert silent.tier is Tier.ONE and silent.required_approvals == 1
    # a dissent that is itself harmless does not make the agreement full either
    harmless = POLICY.assess(consensus_draft(DELETE_POD, DELETE_POD, "kubectl -n default delete pod web-0"))
    assert harmless.tier is Tier.ONE and harmless.required_approvals == 1


def test_partial_agreement_with_a_riskier_dissent_takes_the_dissent_tier() -> None:
    assessment = POLICY.assess(consensus_draft(DELETE_POD, DELETE_POD, SCALE_TO_ZERO))
    assert assessment.tier is Tier.TWO and assessment.required_approvals == 2


def test_a_blocked_chosen_command_stays_blocked() -> None:
    proposal = consensus_draft(DELETE_NAMESPACE, DELETE_NAMESPACE, RESTART)
    assessment = POLICY.assess(proposal)
    assert assessment.tier is Tier.BLOCKED and assessment.required_approvals == 0
    assert assessment.blocked_reason is not None and "namespace" in assessment.blocked_reason


def test_without_a_consensus_record_the_assessment_is_the_commands_own() -> None:
    plain = draft(DELETE_POD)
    assert plain.consensus is None
    assert POLICY.assess(plain).tier is Tier.AUTO
    assert POLICY.assess(plain) == POLICY.assess_command(DELETE_POD, trusted=True)
    assert POLICY.assess(draft(RESTART)).tier is Tier.ONE


def test_a_dissent_of_a_lower_tier_does_not_lower_the_tier() -> None:
    assessment = POLICY.assess(consensus_draft(SCALE_TO_ZERO, SCALE_TO_ZERO, RESTART))
    assert assessment.tier is Tier.TWO and assessment.required_approvals == 2


def test_full_agreement_with_a_low_confidence_vote_is_not_trusted_to_run_alone() -> None:
    votes = [vote(A, DELETE_POD, confidence=0.9), vote(B, DELETE_POD, confidence=0.5),
             vote(C, DELETE_POD, confidence=0.9)]
    proposal = chosen(*votes)
    assert proposal.confidence == 0.5
    assert POLICY.assess(proposal).tier is Tier.ONE


def test_auto_stays_off_when_auto_remediation_is_disabled() -> None:
    manual = replace(POLICY, auto_enabled=False)
    assert manual.assess(consensus_draft(DELETE_POD, DELETE_POD, DELETE_POD)).tier is Tier.ONE


# --- vote_tiers ---------------------------------------------------------------------------------------


def tiered(proposal: ProposalDraft) -> dict[str, Any]:
    record = POLICY.vote_tiers(proposal, POLICY.assess(proposal))
    assert record is not None
    return record


def test_vote_tiers_adds_tier_and_blast_score_to_each_answered_vote() -> None:
    proposal = consensus_draft(RESTART, SCALE_TO_ZERO, None)
    record = tiered(proposal)
    assert record["agree"] == 1 and record["of"] == 3  # the tally's record is kept
    restart, scale, silent = record["votes"]
    assert (restart["tier"], restart["blast_score"]) == ("one_approver", POLICY.assess_command(RESTART).score.value)
    assert (scale["tier"], scale["blast_score"]) == ("two_approvers", POLICY.assess_command(SCALE_TO_ZERO).score.value)
    assert restart["agrees"] is True and scale["agrees"] is False and scale["command"] == SCALE_TO_ZERO
    assert "tier" not in silent and "blast_score" not in silent and silent["error"]
    assert record["raised"] is True


def test_vote_tiers_assesses_a_blocked_dissent_as_blocked() -> None:
    record = tiered(consensus_draft(RESTART, RESTART, DELETE_NAMESPACE))
    assert [v["tier"] for v in record["votes"]] == ["one_approver", "one_approver", "blocked"]
    assert record["votes"][2]["blast_score"] == 100
    assert record["raised"] is True


def test_vote_tiers_is_not_raised_on_full_agreement() -> None:
    assert tiered(consensus_draft(RESTART, RESTART_AGAIN, RESTART))["raised"] is False
    assert tiered(consensus_draft(DELETE_POD, DELETE_POD))["raised"] is False


def test_vote_tiers_is_raised_when_auto_is_withheld() -> None:
    proposal = consensus_draft(DELETE_POD, DELETE_POD, None)
    assert POLICY.assess(replace(proposal, consensus=None)).tier is Tier.AUTO
    assert tiered(proposal)["raised"] is True


def test_vote_tiers_is_not_raised_when_the_agreed_command_is_already_the_riskiest() -> None:
    assert tiered(consensus_draft(SCALE_TO_ZERO, SCALE_TO_ZERO, RESTART))["raised"] is False
    assert tiered(consensus_draft(DELETE_NAMESPACE, RESTART, DELETE_NAMESPACE))["raised"] is False


def test_vote_tiers_without_a_consensus_is_none() -> None:
    plain = draft(RESTART)
    assert POLICY.vote_tiers(plain, POLICY.assess(plain)) is None


def test_vote_tiers_does_not_change_the_drafts_record() -> None:
    proposal = consensus_draft(RESTART, SCALE_TO_ZERO)
    before = repr(proposal.consensus)
    tiered(proposal)
    assert repr(proposal.consensus) == before
