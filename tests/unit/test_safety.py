"""services/safety.py: parsing, blast radius, tiers, trust, and an assessment that never raises."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from services import safety
from services.errors import AlertpilotError
from services.safety import (
    BASE_SCORES,
    HARD_DELETE_KINDS,
    PENALTIES,
    REQUIRED_APPROVALS,
    NamespacePolicy,
    RemediationSpec,
    Tier,
    UnsafeCommand,
    assess,
    blast_radius,
    find_hard_rule,
    is_trusted,
    parse_command,
    tier_for,
)

POLICY = NamespacePolicy()
KUBECTL = frozenset({"kubectl"})
AUTO, ONE, TWO, BLOCKED = Tier.AUTO, Tier.ONE, Tier.TWO, Tier.BLOCKED


@dataclass(frozen=True)
class Row:
    command: str
    lo: int
    hi: int
    tier: Tier
    tools: frozenset[str] = KUBECTL
    auto_enabled: bool = True
    trusted: bool = True


# (id, row). Tiers are for auto_enabled=True, trusted=True unless the row says otherwise.
TABLE: list[tuple[str, Row]] = [
    # --- read verbs --------------------------------------------------------------------------------
    ("get", Row("kubectl get pods", 0, 0, AUTO)),
    ("get-prod", Row("kubectl -n prod get pods -o wide", 0, 0, AUTO)),
    ("describe", Row("kubectl -n prod describe deploy/api", 0, 0, AUTO)),
    ("logs", Row("kubectl -n prod logs api-0 -c app --tail 100", 1, 2, AUTO)),
    ("logs-follow-previous", Row("kubectl logs -f -p api-0", 1, 1, AUTO)),
    ("top", Row("kubectl top pods -n prod", 0, 0, AUTO)),
    ("top-node", Row("kubectl top node", 0, 0, AUTO)),
    ("rollout-status", Row("kubectl -n prod rollout status deployment/api", 0, 0, AUTO)),
    ("rollout-history", Row("kubectl -n prod rollout history deployment/api", 0, 0, AUTO)),
    ("get-all-namespaces-read", Row("kubectl get pods -A", 0, 0, AUTO)),
    ("get-secret-values", Row("kubectl -n prod get secret db -o yaml", 51, 70, TWO)),
    ("get-secret-names", Row("kubectl -n prod get secrets", 0, 0, AUTO)),
    ("tab-separated", Row("kubectl\tget\tpods", 0, 0, AUTO)),
    # --- changes, with every multiplier ------------------------------------------------------------
    ("annotate", Row("kubectl annotate deploy/api note=restarted", 5, 5, AUTO)),
    ("label-prod", Row("kubectl -n prod label pod api-0 debug=true", 8, 8, AUTO)),
    ("label-namespace-prod", Row("kubectl label ns prod team=sre", 8, 8, AUTO)),
    ("restart-default", Row("kubectl rollout restart deployment/api", 8, 8, AUTO)),
    ("restart-prod", Row("kubectl -n prod rollout restart deployment/api", 12, 12, ONE)),
    ("restart-production", Row("kubectl --namespace=production rollout restart deploy/api", 12, 12, ONE)),
    ("restart-glob-prod", Row("kubectl -n payments-prod rollout restart sts/db", 12, 12, ONE)),
    ("restart-kube-system", Row("kubectl -n kube-system rollout restart deploy/coredns", 16, 16, ONE)),
    ("restart-dev", Row("kubectl -n dev rollout restart deploy/api", 4, 4, AUTO)),
    ("restart-glob-dev", Row("kubectl -n team-dev rollout restart deploy/api", 4, 4, AUTO)),
    ("restart-staging", Row("kubectl --namespace staging rollout restart deploy/api", 4, 4, AUTO)),
    ("restart-dev-untrusted", Row("kubectl -n dev rollout restart deploy/api", 4, 4, ONE, trusted=False)),
    ("restart-dev-auto-off", Row("kubectl -n dev rollout restart deploy/api", 4, 4, ONE, auto_enabled=False)),
    ("restart-every-deployment", Row("kubectl -n prod rollout restart deployment", 30, 45, ONE)),
    ("restart-by-selector", Row("kubectl -n prod rollout restart deployment -l app=api", 20, 25, ONE)),
    ("restart-two", Row("kubectl -n prod rollout restart deploy/a deploy/b", 22, 22, ONE)),
    ("scale-unknown-direction", Row("kubectl -n prod scale deploy/api --replicas=3", 18, 18, ONE)),
    ("scale-up-hint", Row("kubectl scale deploy/api --replicas=5 --current-replicas=3", 6, 6, AUTO)),
    ("scale-down-hint", Row("kubectl scale deploy/api --replicas=1 --current-replicas=3", 12, 12, ONE)),
    ("scale-to-zero", Row("kubectl -n prod scale deploy/api --replicas 0", 51, 55, TWO)),
    ("scale-to-zero-dev", Row("kubectl -n dev scale deploy/api --replicas=0", 18, 18, ONE)),
    ("cordon", Row("kubectl cordon node-1", 15, 15, ONE)),
    ("cordon-namespace-ignored", Row("kubectl -n prod cordon node-1", 15, 15, ONE)),
    ("uncordon", Row("kubectl uncordon node-1", 5, 5, AUTO)),
    ("delete-pod", Row("kubectl delete pod api-0", 10, 10, AUTO)),
    ("delete-pod-prod", Row("kubectl -n prod delete pod api-0", 15, 15, ONE)),
    ("delete-pod-force-grace", Row("kubectl -n prod delete pod x --grace-period=0 --force", 45, 45, ONE)),
    ("delete-pod-now", Row("kubectl delete pod x --now", 25, 25, ONE)),
    ("delete-pods-selector", Row("kubectl -n prod delete pods -l app=api", 35, 35, ONE)),
    ("delete-pods-field-selector", Row("kubectl delete pods --field-selector=status.phase=Failed", 30, 30, ONE)),
    ("delete-several-pods", Row("kubectl -n prod delete pod a b c", 25, 25, ONE)),
    ("rollout-undo", Row("kubectl -n prod rollout undo deployment/api", 23, 23, ONE)),
    ("set-image", Row("kubectl -n prod set image deploy/api api=repo/api:1.2", 38, 38, ONE)),
    ("set-env", Row("kubectl set env deploy/api LOG_LEVEL=debug", 25, 25, ONE)),
    ("set-resources", Row("kubectl set resources deploy/api -c=api --limits=cpu=200m,memory=512Mi", 25, 25, ONE)),
    ("patch", Row("kubectl -n prod patch deploy api -p '{\"spec\":{\"replicas\":3}}'", 45, 45, ONE)),
    ("apply", Row("kubectl apply -f deploy.yaml", 35, 35, ONE)),
    ("apply-url", Row("kubectl apply -f https://example.com/x.yaml", 55, 55, TWO)),
    ("apply-prune-all", Row("kubectl -n prod apply -f dir/ --prune --all", 95, 99, TWO)),
    ("replace", Row("kubectl replace -f deploy.yaml", 35, 35, ONE)),
    ("replace-force", Row("kubectl replace --force -f deploy.yaml", 50, 50, ONE)),
    ("drain", Row("kubectl drain node-1 --ignore-daemonsets", 45, 45, ONE)),
    ("drain-emptydir", Row("kubectl drain node-1 --ignore-daemonsets --delete-emptydir-data", 55, 55, TWO)),
    ("drain-disable-eviction-force", Row("kubectl drain node-1 --disable-eviction --force", 75, 75, TWO)),
    ("exec", Row("kubectl -n prod exec api-0 -- ls /tmp", 90, 90, TWO)),
    ("exec-dev", Row("kubectl -n dev exec -it api-0 -- date", 30, 30, ONE)),
    ("delete-deployment", Row("kubectl delete deployment api", 60, 60, TWO)),
    ("delete-statefulset-prod-capped", Row("kubectl -n prod delete statefulset db", 99, 99, TWO)),
    ("delete-daemonset-kube-system", Row("kubectl -n kube-system delete ds kube-proxy", 99, 99, TWO)),
    ("delete-service", Row("kubectl delete svc api", 55, 55, TWO)),
    ("delete-configmap-staging", Row("kubectl -n staging delete cm api-config", 28, 28, ONE)),
    ("delete-secret", Row("kubectl delete secret db", 65, 65, TWO)),
    ("delete-orphan", Row("kubectl -n staging delete deploy api --cascade=orphan", 45, 45, ONE)),
    ("delete-manifest", Row("kubectl delete -f app.yaml", 70, 70, TWO)),
    ("delete-other-kind", Row("kubectl delete certificates.cert-manager.io web", 70, 70, TWO)),
    ("delete-all-namespaces-selector", Row("kubectl delete pods -l app=x -A", 70, 70, TWO)),
    ("annotate-all", Row("kubectl annotate pods --all note=x", 30, 30, ONE)),
    ("create-clusterrolebinding", Row("kubectl create clusterrolebinding x --clusterrole=view", 60, 60, TWO)),
    ("create-deployment", Row("kubectl -n dev create deployment x --image=nginx", 15, 15, ONE)),
    ("taint", Row("kubectl taint nodes node-1 dedicated=db:NoSchedule", 30, 30, ONE)),
    ("autoscale", Row("kubectl autoscale deploy api --min 2 --max 5", 15, 15, ONE)),
    ("run", Row("kubectl run tmp --image=busybox -- sleep 5", 40, 40, ONE)),
    # --- hard rules ---------------------------------------------------------------------------------
    ("hard-delete-ns", Row("kubectl delete ns prod", 100, 100, BLOCKED)),
    ("hard-delete-namespace", Row("kubectl delete namespace prod", 100, 100, BLOCKED)),
    ("hard-delete-namespaces", Row("kubectl delete namespaces prod", 100, 100, BLOCKED)),
    ("hard-delete-ns-slash", Row("kubectl delete ns/prod", 100, 100, BLOCKED)),
    ("hard-delete-ns-dev", Row("kubectl -n dev delete ns dev-sandbox", 100, 100, BLOCKED)),
    ("hard-delete-ns-grouped", Row("kubectl delete namespaces.v1 prod", 100, 100, BLOCKED)),
    ("hard-delete-ns-mixed-kinds", Row("kubectl delete pods,ns prod", 100, 100, BLOCKED)),
    ("hard-delete-ns-upper-kind", Row("kubectl delete NS prod", 100, 100, BLOCKED)),
    ("hard-delete-ns-after-dashes", Row("kubectl -n prod delete -- ns prod", 100, 100, BLOCKED)),
    ("hard-delete-pv", Row("kubectl delete pv data-1", 100, 100, BLOCKED)),
    ("hard-delete-pvc", Row("kubectl -n prod delete pvc data-db-0", 100, 100, BLOCKED)),
    ("hard-delete-pvc-all", Row("kubectl -n prod delete pvc --all", 100, 100, BLOCKED)),
    ("hard-delete-clusterrole", Row("kubectl delete clusterrole admin", 100, 100, BLOCKED)),
    ("hard-delete-clusterrolebinding", Row("kubectl delete clusterrolebinding cluster-admin", 100, 100, BLOCKED)),
    ("hard-delete-crd", Row("kubectl delete crd certificates.cert-manager.io", 100, 100, BLOCKED)),
    ("hard-delete-crd-long", Row("kubectl delete customresourcedefinition x", 100, 100, BLOCKED)),
    ("hard-delete-node", Row("kubectl delete node node-1", 100, 100, BLOCKED)),
    ("hard-delete-no", Row("kubectl delete no node-1", 100, 100, BLOCKED)),
    ("hard-delete-all-kind", Row("kubectl -n dev delete all -l app=x", 100, 100, BLOCKED)),
    ("hard-delete-pods-all-A", Row("kubectl delete pods --all -A", 100, 100, BLOCKED)),
    ("hard-delete-all-dev", Row("kubectl -n dev delete pods --all", 100, 100, BLOCKED)),
    ("hard-delete-all-true", Row("kubectl delete deploy --all=true", 100, 100, BLOCKED)),
    ("hard-exec-rm-rf", Row("kubectl -n prod exec api-0 -- rm -rf /data", 100, 100, BLOCKED)),
    ("hard-exec-rm-fr", Row("kubectl exec api-0 -- rm -f -r /data", 100, 100, BLOCKED)),
    ("hard-exec-mkfs", Row("kubectl exec api-0 -- mkfs.ext4 /dev/sdb", 100, 100, BLOCKED)),
    ("hard-exec-dd", Row("kubectl exec api-0 -- dd if=/dev/zero of=/dev/sda", 100, 100, BLOCKED)),
    ("hard-exec-reboot", Row("kubectl debug node/node-1 -it --image=busybox -- reboot", 100, 100, BLOCKED)),
    ("hard-exec-shutdown", Row("kubectl exec api-0 -- shutdown -h now", 100, 100, BLOCKED)),
    ("hard-exec-nested-delete-ns", Row('kubectl exec tools -- kubectl delete ns prod', 100, 100, BLOCKED)),
    ("hard-psql-drop-allowed", Row('psql -c "DROP TABLE users"', 100, 100, BLOCKED, tools=frozenset({"kubectl", "psql"}))),
    ("hard-psql-drop-split", Row('psql -c "DR""OP TABLE users"', 100, 100, BLOCKED, tools=frozenset({"psql"}))),
    ("hard-psql-drop-comment", Row('psql -c "DROP/**/DATABASE app"', 100, 100, BLOCKED, tools=frozenset({"psql"}))),
    ("hard-psql-truncate", Row("psql -c 'truncate audit'", 100, 100, BLOCKED, tools=frozenset({"psql"}))),
    ("hard-ssh-nested-delete", Row('ssh bastion "kubectl delete ns prod"', 100, 100, BLOCKED, tools=frozenset({"ssh"}))),
    ("hard-ssh-reboot", Row("ssh node-1 sudo reboot", 100, 100, BLOCKED, tools=frozenset({"ssh"}))),
    ("hard-systemctl-poweroff", Row("systemctl poweroff", 100, 100, BLOCKED, tools=frozenset({"systemctl"}))),
    # --- adversarial ---------------------------------------------------------------------------------
    ("semicolon-rm", Row("kubectl get pods; rm -rf /", 100, 100, BLOCKED)),
    ("and-and-rm", Row("kubectl get pods && rm -rf /", 100, 100, BLOCKED)),
    ("or-or", Row("kubectl get pods || kubectl delete ns prod", 100, 100, BLOCKED)),
    ("pipe", Row("kubectl get pods | sh", 100, 100, BLOCKED)),
    ("background", Row("kubectl get pods & kubectl delete ns prod", 100, 100, BLOCKED)),
    ("command-substitution", Row("kubectl rollout restart deploy/x $(curl x)", 100, 100, BLOCKED)),
    ("backticks", Row("kubectl rollout restart deploy/`whoami`", 100, 100, BLOCKED)),
    ("ifs", Row("kubectl${IFS}delete${IFS}ns${IFS}prod", 100, 100, BLOCKED)),
    ("redirect-out", Row("kubectl get secret db -o yaml > /tmp/x", 100, 100, BLOCKED)),
    ("redirect-in", Row("kubectl apply -f - < x.yaml", 100, 100, BLOCKED)),
    ("newline", Row("kubectl rollout restart deploy/x\nkubectl delete ns prod", 100, 100, BLOCKED)),
    ("carriage-return", Row("kubectl get pods\rkubectl delete ns prod", 100, 100, BLOCKED)),
    ("nul", Row("kubectl get pods\x00", 100, 100, BLOCKED)),
    ("quoted-semicolon", Row('kubectl annotate pod x a="b;c"', 100, 100, BLOCKED)),
    ("quoted-substitution", Row("kubectl annotate pod x 'a=$(id)'", 100, 100, BLOCKED)),
    ("backslash-escape", Row("kubectl delete n\\s prod", 100, 100, BLOCKED)),
    ("quoted-ns", Row('kubectl delete "ns" prod', 100, 100, BLOCKED)),
    ("single-quoted-namespace", Row("kubectl delete 'namespace' prod", 100, 100, BLOCKED)),
    ("split-quotes-ns", Row('kubectl delete n"s" prod', 100, 100, BLOCKED)),
    ("uppercase-everything", Row("KUBECTL DELETE NS PROD", 100, 100, BLOCKED)),
    ("fullwidth-semicolon", Row("kubectl get pods；rm -rf /", 100, 100, BLOCKED)),
    ("cyrillic-o-namespace", Row("kubectl -n prоd rollout restart deploy/api", 100, 100, BLOCKED)),
    ("zero-width-space", Row("kubectl delete n\u200bs prod", 100, 100, BLOCKED)),
    ("unclosed-quote", Row('kubectl annotate pod x "a=b', 100, 100, BLOCKED)),
    ("empty", Row("", 100, 100, BLOCKED)),
    ("only-spaces", Row("   \t ", 100, 100, BLOCKED)),
    ("sudo", Row("sudo kubectl get pods", 100, 100, BLOCKED)),
    ("sudo-even-if-allowed", Row("sudo kubectl get pods", 100, 100, BLOCKED, tools=frozenset({"kubectl", "sudo"}))),
    ("bash-c-even-if-allowed", Row('bash -c "kubectl get pods"', 100, 100, BLOCKED, tools=frozenset({"bash"}))),
    ("env-wrapper", Row("env KUBECONFIG=x kubectl get pods", 100, 100, BLOCKED)),
    ("absolute-path", Row("/usr/bin/kubectl get pods", 100, 100, BLOCKED)),
    ("relative-path", Row("./kubectl get pods", 100, 100, BLOCKED)),
    ("docker-not-allowed", Row("docker rm -f x", 100, 100, BLOCKED)),
    ("context-flag", Row("kubectl --context other-cluster -n prod rollout restart deploy/api", 100, 100, BLOCKED)),
    ("kubeconfig-flag", Row("kubectl --kubeconfig=/tmp/admin rollout restart deploy/api", 100, 100, BLOCKED)),
    ("server-short-flag", Row("kubectl -s https://evil:6443 get pods", 100, 100, BLOCKED)),
    ("token-flag", Row("kubectl --token abc get pods", 100, 100, BLOCKED)),
    ("impersonation", Row("kubectl --as=system:admin delete pod x", 100, 100, BLOCKED)),
    ("raw-delete", Row("kubectl delete --raw /api/v1/namespaces/prod", 100, 100, BLOCKED)),
    ("unknown-verb-plugin", Row("kubectl nuke everything", 100, 100, BLOCKED)),
    ("edit-interactive", Row("kubectl edit deploy/api", 100, 100, BLOCKED)),
    ("cp-host-files", Row("kubectl cp /etc/passwd api-0:/tmp/x", 100, 100, BLOCKED)),
    ("config-use-context", Row("kubectl config use-context prod-admin", 100, 100, BLOCKED)),
    ("create-token", Row("kubectl create token default", 100, 100, BLOCKED)),
    ("kubectl-alone", Row("kubectl", 100, 100, BLOCKED)),
    ("scale-without-replicas", Row("kubectl scale deploy/api", 100, 100, BLOCKED)),
    ("scale-bad-replicas", Row("kubectl scale deploy/api --replicas=many", 100, 100, BLOCKED)),
    ("bad-namespace", Row("kubectl -n 'prod x' get pods", 100, 100, BLOCKED)),
    ("unknown-flag-could-swallow-kind", Row("kubectl delete --mystery ns prod", 100, 100, BLOCKED)),
    ("unknown-short-flag", Row("kubectl delete -X pod x", 100, 100, BLOCKED)),
    ("unknown-flag-with-value-is-fine", Row("kubectl -n prod delete pod x --mystery=1", 15, 15, ONE)),
    ("from-file-reads-bot-host", Row("kubectl create cm x --from-file=/home/bot/.kube/config", 100, 100, BLOCKED)),
    ("hard-delete-api-extensions", Row("kubectl delete api-extensions foo", 100, 100, BLOCKED)),
    # --dry-run has an optional value, so "server" is read as the resource type, as kubectl reads it
    ("dry-run-optional-value", Row("kubectl delete --dry-run server pod x", 80, 80, TWO)),
    ("deployment-named-reboot", Row("kubectl rollout restart deploy/reboot", 100, 100, BLOCKED)),
    # --- other tools, allowed on purpose ------------------------------------------------------------
    ("systemctl-allowed", Row("systemctl restart nginx", 40, 40, ONE, tools=frozenset({"kubectl", "systemctl"}))),
    ("systemctl-not-allowed", Row("systemctl restart nginx", 100, 100, BLOCKED)),
    ("ssh-allowed", Row("ssh node-1 uptime", 60, 60, TWO, tools=frozenset({"ssh"}))),
    ("kubectl-not-in-allowed-tools", Row("kubectl get pods", 100, 100, BLOCKED, tools=frozenset({"systemctl"}))),
]


def test_table_is_big_enough() -> None:
    assert len(TABLE) >= 60
    assert len({row_id for row_id, _ in TABLE}) == len(TABLE)


@pytest.mark.parametrize("row", [row for _, row in TABLE], ids=[row_id for row_id, _ in TABLE])
def test_safety_table(row: Row) -> None:
    result = assess(
        row.command, policy=POLICY, allowed_tools=row.tools, auto_enabled=row.auto_enabled, trusted=row.trusted
    )
    assert row.lo <= result.score.value <= row.hi, result.score.summary
    assert result.tier is row.tier, result.score.summary
    assert result.required_approvals == REQUIRED_APPROVALS[row.tier]
    assert result.error is None
    if row.tier is BLOCKED:
        assert result.blocked_reason
    else:
        assert result.blocked_reason is None
        assert result.spec is not None


def test_every_kubectl_verb_has_a_base_score() -> None:
    special = {"delete", "scale"}
    for verb in safety._VERBS:
        if verb not in special:
            assert verb in BASE_SCORES, verb
    for key in ("scale up", "scale down", "scale to 0", "delete pod", "delete (other kind)"):
        assert key in BASE_SCORES


def test_base_table_matches_the_issue() -> None:
    for verb in ("get", "describe", "logs", "top", "rollout status", "rollout history"):
        assert 0 <= BASE_SCORES[verb] <= 2
    assert BASE_SCORES["annotate"] == BASE_SCORES["label"] == 5
    assert BASE_SCORES["rollout restart"] == 8
    assert (BASE_SCORES["scale up"], BASE_SCORES["scale down"], BASE_SCORES["scale to 0"]) == (6, 12, 35)
    assert (BASE_SCORES["cordon"], BASE_SCORES["uncordon"], BASE_SCORES["delete pod"]) == (15, 5, 10)
    assert BASE_SCORES["rollout undo"] == 15
    assert BASE_SCORES["set image"] == BASE_SCORES["set env"] == BASE_SCORES["set resources"] == 25
    assert BASE_SCORES["patch"] == 30
    assert BASE_SCORES["apply"] == BASE_SCORES["replace"] == 35
    assert BASE_SCORES["drain"] == 45
    assert BASE_SCORES["exec"] == 60
    for kind in ("deployment", "statefulset", "daemonset", "service", "configmap", "secret"):
        assert 55 <= BASE_SCORES[f"delete {kind}"] <= 70
    assert PENALTIES["--force"] == PENALTIES["--grace-period=0"] == PENALTIES["--cascade=orphan"] == 15
    assert PENALTIES["--all-namespaces"] == 30
    assert PENALTIES["--all"] == 25
    assert PENALTIES["selector on delete"] == 20
    assert PENALTIES["several resources"] == 10


# --- reasons -----------------------------------------------------------------------------------------


def test_score_reasons_read_like_the_issue() -> None:
    score = blast_radius(parse_command("kubectl -n prod rollout restart deployment/api"), POLICY)
    assert score.reasons == ("rollout restart 8", "× prod 1.5", "= 12")
    assert score.summary == "rollout restart 8 × prod 1.5 = 12"
    assert score.hard_rule is None


def test_score_reasons_list_penalties() -> None:
    score = blast_radius(parse_command("kubectl -n prod delete pod x --grace-period=0 --force"), POLICY)
    assert score.summary == "delete pod 10 × prod 1.5 + --force 15 + --grace-period=0 15 = 45"


def test_score_rounds_up_half_points() -> None:
    score = blast_radius(parse_command("kubectl -n dev rollout undo deploy/api"), POLICY)
    assert score.value == 8  # 15 × 0.5 = 7.5 → 8, the safe side
    assert score.summary == "rollout undo 15 × dev/staging 0.5 = 8"


def test_score_caps_arithmetic_at_99_so_only_hard_rules_block() -> None:
    score = blast_radius(parse_command("kubectl -n kube-system delete deploy coredns --force"), POLICY)
    assert score.value == 99
    assert score.hard_rule is None
    assert score.reasons[-1] == "= 135 → 99 (only hard rules score 100)"


def test_hard_rule_score_names_the_rule() -> None:
    score = blast_radius(parse_command("kubectl -n prod delete pvc --all"), POLICY)
    assert score.value == 100
    assert score.hard_rule == "deleting a persistent volume claim"
    assert "hard rule: delete --all" in score.reasons


def test_assess_blocked_reason_for_hard_rule_and_unsafe() -> None:
    hard = assess("kubectl delete ns prod", policy=POLICY, allowed_tools=KUBECTL, auto_enabled=True, trusted=True)
    assert hard.blocked_reason == "hard rule: deleting a namespace"
    unsafe = assess("kubectl get pods; ls", policy=POLICY, allowed_tools=KUBECTL, auto_enabled=True, trusted=True)
    assert unsafe.spec is None
    assert "';'" in (unsafe.blocked_reason or "")
    both = assess("kubectl get pods; rm -rf /", policy=POLICY, allowed_tools=KUBECTL, auto_enabled=True, trusted=True)
    assert both.score.hard_rule == "rm -r (recursive delete)"
    assert (both.blocked_reason or "").startswith("hard rule: rm -r")


def test_scale_direction_uses_current_replicas_hint() -> None:
    spec = parse_command("kubectl -n prod scale deploy/api --replicas=3")
    assert blast_radius(spec, POLICY).reasons[0] == "scale (direction unknown) 12"
    assert blast_radius(spec, POLICY, current_replicas=2).reasons[0] == "scale up 6"
    assert blast_radius(spec, POLICY, current_replicas=5).reasons[0] == "scale down 12"
    assert blast_radius(spec, POLICY, current_replicas=3).reasons[0] == "scale up 6"
    result = assess(
        "kubectl -n prod scale deploy/api --replicas=3",
        policy=POLICY,
        allowed_tools=KUBECTL,
        auto_enabled=True,
        trusted=True,
        current_replicas=2,
    )
    assert (result.score.value, result.tier) == (9, AUTO)


# --- parsing -----------------------------------------------------------------------------------------


def test_parse_rollout_restart() -> None:
    spec = parse_command("kubectl -n prod rollout restart deploy/api")
    assert spec.tool == "kubectl"
    assert spec.verb == "rollout restart"
    assert (spec.kind, spec.name, spec.namespace) == ("deployment", "api", "prod")
    assert spec.argv == ("kubectl", "-n", "prod", "rollout", "restart", "deploy/api")
    assert spec.flags == ("--namespace=prod",)
    assert spec.resources == ("deployment/api",)
    assert spec.dry_run_required is True
    assert spec.target_state == {"restarted": True}
    assert "namespace prod only" in spec.constraints
    assert "one resource: deployment/api" in spec.constraints
    # kubectl has no --dry-run for rollout restart: the rehearsal is a get of the target
    assert spec.dry_run_argv == ("kubectl", "-n", "prod", "get", "deployment/api")


@pytest.mark.parametrize(
    "command",
    [
        "kubectl -n prod rollout restart deployment/api",
        "kubectl --namespace=prod rollout restart deployments/api",
        "kubectl --namespace prod rollout restart deployments.apps/api",
        "kubectl rollout restart deployment api -n prod",
        "kubectl rollout restart deploy api --namespace=PROD",
        "kubectl -nprod rollout restart deployment.v1.apps/api",
        "kubectl -n=prod rollout restart Deployment/api",
    ],
)
def test_parse_resource_forms(command: str) -> None:
    spec = parse_command(command)
    assert (spec.verb, spec.kind, spec.name, spec.namespace) == ("rollout restart", "deployment", "api", "prod")


@pytest.mark.parametrize(
    ("command", "kind"),
    [
        ("kubectl delete pod/x", "pod"),
        ("kubectl delete po x", "pod"),
        ("kubectl delete ns x", "namespace"),
        ("kubectl delete namespace x", "namespace"),
        ("kubectl delete pvc x", "persistentvolumeclaim"),
        ("kubectl delete pv x", "persistentvolume"),
        ("kubectl delete no x", "node"),
        ("kubectl delete node x", "node"),
        ("kubectl delete clusterrole x", "clusterrole"),
        ("kubectl delete clusterrolebinding x", "clusterrolebinding"),
        ("kubectl delete crd x", "customresourcedefinition"),
        ("kubectl delete customresourcedefinition x", "customresourcedefinition"),
        ("kubectl delete sts x", "statefulset"),
        ("kubectl delete svc x", "service"),
    ],
)
def test_parse_kind_aliases(command: str, kind: str) -> None:
    assert parse_command(command).kind == kind


def test_parse_scale_target_state() -> None:
    assert parse_command("kubectl scale deploy/api --replicas=3").target_state == {"replicas": 3}
    assert parse_command("kubectl scale deploy/api --replicas 0").target_state == {"replicas": 0}
    spec = parse_command("kubectl scale --current-replicas=2 --replicas=4 deployment api")
    assert spec.target_state == {"replicas": 4, "current_replicas": 2}
    assert (spec.kind, spec.name) == ("deployment", "api")


def test_parse_set_image_target_state() -> None:
    spec = parse_command("kubectl -n prod set image deploy/api api=repo/api:1.2")
    assert spec.verb == "set image"
    assert spec.target_state == {"images": {"api": "repo/api:1.2"}, "container": "api", "image": "repo/api:1.2"}
    two = parse_command("kubectl set image deployment api api=a:1 sidecar=b:2")
    assert two.target_state == {"images": {"api": "a:1", "sidecar": "b:2"}}
    assert (two.kind, two.name) == ("deployment", "api")


def test_parse_other_target_states() -> None:
    assert parse_command("kubectl set env deploy/api A=1 B-").target_state == {"env": {"A": "1"}, "unset": ["B"]}
    assert parse_command("kubectl cordon node-1").target_state == {"schedulable": False}
    assert parse_command("kubectl drain node-1").target_state == {"schedulable": False, "drained": True}
    assert parse_command("kubectl uncordon node/node-1").target_state == {"schedulable": True}
    assert parse_command("kubectl rollout undo deploy/api --to-revision=3").target_state == {"revision": 3}
    assert parse_command("kubectl rollout undo deploy/api").target_state == {"revision": "previous"}
    assert parse_command("kubectl delete pod a b").target_state == {"deleted": ["pod/a", "pod/b"]}
    assert parse_command("kubectl label pod x a=b c-").target_state == {"labels": {"a": "b"}, "remove": ["c"]}
    exec_spec = parse_command("kubectl exec api-0 -c app -- ls -la /tmp")
    assert exec_spec.target_state == {"command": ["ls", "-la", "/tmp"]}
    assert (exec_spec.kind, exec_spec.name) == ("pod", "api-0")
    assert parse_command("kubectl get pods").target_state == {}


def test_parse_selectors_and_all_namespaces() -> None:
    spec = parse_command("kubectl delete pods -l app=api,tier=web -A")
    assert spec.selector == "app=api,tier=web"
    assert spec.all_namespaces is True
    assert "--all-namespaces" in spec.flags
    assert parse_command("kubectl delete pods --selector app=api").selector == "app=api"
    assert parse_command("kubectl get pods --all-namespaces=false").all_namespaces is False


def test_parse_dry_run_plans() -> None:
    scale = parse_command("kubectl -n prod scale deploy/api --replicas=3 --dry-run=client")
    assert scale.dry_run_argv == ("kubectl", "-n", "prod", "scale", "deploy/api", "--replicas=3", "--dry-run=server")
    read = parse_command("kubectl get pods")
    assert (read.dry_run_required, read.dry_run_argv) == (False, None)
    assert "read-only" in read.constraints
    restart_all = parse_command("kubectl -n prod rollout restart deployment -l app=api")
    assert restart_all.dry_run_argv == ("kubectl", "-n", "prod", "get", "deployment", "--selector=app=api")
    run = parse_command("kubectl run tmp --image=busybox -- sleep 5")
    assert run.dry_run_argv == ("kubectl", "run", "tmp", "--image=busybox", "--dry-run=server", "--", "sleep", "5")


def test_parse_other_tool_when_allowed() -> None:
    spec = parse_command("systemctl restart nginx", allowed_tools=frozenset({"systemctl"}))
    assert (spec.tool, spec.verb, spec.name) == ("systemctl", "restart", "nginx")
    assert spec.dry_run_required is False
    assert spec.rollback.kind == "manual"
    assert blast_radius(spec, POLICY).summary == "systemctl (not kubectl) 40 = 40"


@pytest.mark.parametrize(
    ("command", "needle"),
    [
        ("", "empty"),
        ("kubectl get pods; ls", "';'"),
        ("kubectl get pods | grep x", "'|'"),
        ("kubectl get pods\nls", "line break"),
        ("kubectl get po\x07ds", "U+0007"),
        ("kubectl get pods；ls", "U+FF1B"),
        ('kubectl get "pods', "cannot parse"),
        ("docker ps", "ALERTPILOT_ALLOWED_TOOLS"),
        ("docker ps", "'docker'"),
        ("/usr/bin/kubectl get pods", "bare tool name"),
        ("sudo kubectl get pods", "never allowed"),
        ("python3 -c x", "never allowed"),
        ("kubectl --context x get pods", "--context"),
        ("kubectl --as admin get pods", "--as"),
        ("kubectl foo", "unknown kubectl command"),
        ("kubectl rollout", "without a subcommand"),
        ("kubectl rollout restart deploy/a b", "mixes TYPE/NAME"),
        ("kubectl " + "x" * 5000, "longer than"),
    ],
)
def test_parse_refuses(command: str, needle: str) -> None:
    with pytest.raises(UnsafeCommand) as excinfo:
        parse_command(command)
    assert needle in excinfo.value.reason
    assert isinstance(excinfo.value, AlertpilotError)


def test_parse_refuses_non_text() -> None:
    with pytest.raises(UnsafeCommand):
        parse_command(None)  # type: ignore[arg-type]


# --- rollback plans ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "kind", "rollback_command"),
    [
        ("kubectl -n prod rollout restart deployment/api", "rollout_undo", "kubectl -n prod rollout undo deployment/api"),
        ("kubectl -n prod rollout restart statefulset/db", "rollout_undo", "kubectl -n prod rollout undo statefulset/db"),
        ("kubectl set image deploy/api api=a:2", "rollout_undo", "kubectl rollout undo deployment/api"),
        ("kubectl -n prod set env deploy/api A=1", "rollout_undo", "kubectl -n prod rollout undo deployment/api"),
        ("kubectl set resources ds/agent --limits=cpu=1", "rollout_undo", "kubectl rollout undo daemonset/agent"),
        ("kubectl -n prod patch deploy api -p '{}'", "rollout_undo", "kubectl -n prod rollout undo deployment/api"),
        (
            "kubectl -n prod scale deploy/api --replicas=5",
            "scale_back",
            "kubectl -n prod scale deployment/api --replicas={replicas}",
        ),
        ("kubectl cordon node-1", "uncordon", "kubectl uncordon node-1"),
        ("kubectl drain node-1 node-2 --ignore-daemonsets", "uncordon", "kubectl uncordon node-1 node-2"),
        ("kubectl -n prod delete pod api-0", "none", None),
        ("kubectl -n prod rollout undo deployment/api", "manual", None),
        ("kubectl delete deployment api", "manual", None),
        ("kubectl -n prod rollout restart deployment", "manual", None),
        ("kubectl patch svc api -p '{}'", "manual", None),
        ("kubectl apply -f x.yaml", "manual", None),
        ("kubectl uncordon node-1", "manual", None),
        ("kubectl get pods", "none", None),
    ],
)
def test_rollback_plans(command: str, kind: str, rollback_command: str | None) -> None:
    rollback = parse_command(command).rollback
    assert rollback.kind == kind
    assert rollback.command == rollback_command
    assert rollback.description


def test_rollback_undo_of_undo_says_pick_by_hand() -> None:
    rollback = parse_command("kubectl -n prod rollout undo deployment/api").rollback
    assert "undo of an undo" in rollback.description
    assert "kubectl -n prod rollout history deployment/api" in rollback.description


def test_rollback_scale_back_argv_is_a_template() -> None:
    rollback = parse_command("kubectl -n prod scale deploy/api --replicas=5").rollback
    assert rollback.argv == ("kubectl", "-n", "prod", "scale", "deployment/api", "--replicas={replicas}")
    assert rollback.command is not None
    assert rollback.command.format(replicas=3) == "kubectl -n prod scale deployment/api --replicas=3"


# --- JSON --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        "kubectl -n prod set image deploy/api api=repo/api:1.2",
        "kubectl -n prod scale deploy/api --replicas=3",
        "kubectl exec api-0 -- ls /",
        "kubectl label pod x a=b c-",
        "kubectl get pods",
        "kubectl apply -f x.yaml",
    ],
)
def test_spec_json_round_trip(command: str) -> None:
    spec = parse_command(command)
    data = json.loads(json.dumps(spec.to_json()))
    assert data == spec.to_json()
    assert RemediationSpec.from_json(data) == spec
    assert hash(spec) == hash(RemediationSpec.from_json(data))


def test_assessment_json_is_json_safe() -> None:
    for command in ("kubectl -n prod rollout restart deploy/api", "kubectl delete ns prod", "x; y", ""):
        result = assess(command, policy=POLICY, allowed_tools=KUBECTL, auto_enabled=False, trusted=False)
        data = json.loads(json.dumps(result.to_json()))
        assert data["tier"] == result.tier.value
        assert data["score"]["value"] == result.score.value
        assert data["score"]["summary"] == result.score.summary


# --- namespace policy --------------------------------------------------------------------------------


def test_namespace_policy_multipliers() -> None:
    assert POLICY.multiplier("prod") == (1.5, "prod")
    assert POLICY.multiplier("Production") == (1.5, "prod")
    assert POLICY.multiplier("payments-prod") == (1.5, "prod")
    assert POLICY.multiplier("kube-system") == (2.0, "kube-system")
    assert POLICY.multiplier("dev") == (0.5, "dev/staging")
    assert POLICY.multiplier("team-dev") == (0.5, "dev/staging")
    assert POLICY.multiplier("staging") == (0.5, "dev/staging")
    assert POLICY.multiplier("default") == (1.0, "")
    assert POLICY.multiplier(None) == (1.0, "")
    assert POLICY.multiplier("dev", all_namespaces=True) == (2.0, "all namespaces")


def test_namespace_policy_parse_good() -> None:
    policy = NamespacePolicy.parse(" Prod, live ,*-prd,, ")
    assert policy.prod == ("prod", "live", "*-prd")
    assert policy.multiplier("shop-prd") == (1.5, "prod")
    assert policy.multiplier("production") == (1.0, "")
    assert NamespacePolicy.parse("prod,production,*-prod") == NamespacePolicy()


def test_namespace_policy_prod_wins_over_low() -> None:
    assert NamespacePolicy.parse("staging").multiplier("staging") == (1.5, "prod")


@pytest.mark.parametrize("csv", ["", " , ", "prod,bad name", "prod;dev", "-prod", "a" * 64, "pr/od"])
def test_namespace_policy_parse_bad(csv: str) -> None:
    with pytest.raises(ValueError, match="ALERTPILOT_PROD_NAMESPACES"):
        NamespacePolicy.parse(csv)


def test_namespace_policy_parse_error_names_the_entry() -> None:
    with pytest.raises(ValueError, match="'bad name'"):
        NamespacePolicy.parse("prod,bad name")


# --- tiers and trust ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("score", "tier"),
    [(0, AUTO), (10, AUTO), (11, ONE), (50, ONE), (51, TWO), (99, TWO), (100, BLOCKED)],
)
def test_tier_boundaries(score: int, tier: Tier) -> None:
    assert tier_for(score, auto_enabled=True, trusted=True) is tier


@pytest.mark.parametrize(("auto_enabled", "trusted"), [(False, True), (True, False), (False, False)])
def test_tier_low_score_needs_a_human_unless_enabled_and_trusted(auto_enabled: bool, trusted: bool) -> None:
    assert tier_for(0, auto_enabled=auto_enabled, trusted=trusted) is ONE
    assert tier_for(10, auto_enabled=auto_enabled, trusted=trusted) is ONE
    assert tier_for(51, auto_enabled=auto_enabled, trusted=trusted) is TWO
    assert tier_for(100, auto_enabled=auto_enabled, trusted=trusted) is BLOCKED


def test_required_approvals() -> None:
    assert dict(REQUIRED_APPROVALS) == {AUTO: 0, ONE: 1, TWO: 2, BLOCKED: 0}


@pytest.mark.parametrize(
    ("kwargs", "trusted"),
    [
        ({"source": "ai", "confidence": 0.65}, True),
        ({"source": "ai", "confidence": 0.9}, True),
        ({"source": "ai", "confidence": 0.64}, False),
        ({"source": "ai", "confidence": None}, False),
        ({"source": "ai", "confidence": float("nan")}, False),
        ({"source": "ai", "confidence": 1.5}, False),
        ({"source": "playbook", "confidence": None, "playbook_runs": 3, "playbook_successes": 3}, True),
        ({"source": "playbook", "confidence": None, "playbook_runs": 5, "playbook_successes": 4}, True),
        ({"source": "playbook", "confidence": None, "playbook_runs": 10, "playbook_successes": 7}, False),
        ({"source": "playbook", "confidence": None, "playbook_runs": 2, "playbook_successes": 2}, False),
        ({"source": "playbook", "confidence": None, "playbook_runs": 3, "playbook_successes": 9}, False),
        ({"source": "playbook", "confidence": 0.99}, False),
        ({"source": "rules", "confidence": 0.99}, False),
        ({"source": "human", "confidence": None}, False),
        ({"source": "", "confidence": 1.0}, False),
    ],
)
def test_is_trusted(kwargs: dict, trusted: bool) -> None:
    assert is_trusted(min_confidence=0.65, **kwargs) is trusted


# --- never raises ------------------------------------------------------------------------------------


def test_assess_scoring_error_escalates_to_one_approver(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(safety, "blast_radius", broken)
    result = assess("kubectl -n dev get pods", policy=POLICY, allowed_tools=KUBECTL, auto_enabled=True, trusted=True)
    assert result.tier is ONE
    assert result.required_approvals == 1
    assert result.error == "RuntimeError: boom"
    assert result.spec is not None
    assert 11 <= result.score.value <= 50
    assert "a human decides" in result.score.summary


def test_assess_scoring_error_still_blocks_a_hard_rule_in_the_text(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(safety, "blast_radius", broken)
    result = assess(
        "kubectl exec x -- rm -rf /", policy=POLICY, allowed_tools=KUBECTL, auto_enabled=True, trusted=True
    )
    assert result.tier is BLOCKED
    assert result.error == "RuntimeError: boom"


def test_assess_parser_crash_escalates(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise KeyError("surprise")

    monkeypatch.setattr(safety, "parse_command", broken)
    result = assess("kubectl get pods", policy=POLICY, allowed_tools=KUBECTL, auto_enabled=True, trusted=True)
    assert result.tier is ONE
    assert result.spec is None
    assert result.error is not None and "KeyError" in result.error


def test_assess_non_text_is_blocked_not_raised() -> None:
    result = assess(None, policy=POLICY, allowed_tools=KUBECTL, auto_enabled=True, trusted=True)  # type: ignore[arg-type]
    assert result.tier is BLOCKED


# --- free-text hard rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("rm -rf /", "rm -r (recursive delete)"),
        ("RM -RF /", "rm -r (recursive delete)"),
        ("/bin/rm --recursive --force x", "rm -r (recursive delete)"),
        ("ｒｍ -ｒｆ /", "rm -r (recursive delete)"),
        ("drop table users", "DROP TABLE"),
        ("DROP   DATABASE app", "DROP DATABASE"),
        ("truncate audit_log", "TRUNCATE"),
        ("mkfs.ext4 /dev/sdb1", "mkfs (formats a filesystem)"),
        ("dd bs=1M if=/dev/zero of=/dev/sda", "dd if= (raw disk copy)"),
        ("sudo shutdown -h now", "shutdown/reboot of a machine"),
        ("systemctl reboot", "shutdown/reboot of a machine"),
    ],
)
def test_find_hard_rule(text: str, rule: str) -> None:
    assert find_hard_rule(text) == rule


@pytest.mark.parametrize(
    "text",
    [
        "kubectl -n prod rollout restart deploy/graceful-shutdown",
        "docker rm -f web",
        "kubectl annotate deploy/x add=1",
        "kubectl -n prod rollout restart deployment/droptables",
        "",
    ],
)
def test_find_hard_rule_leaves_ordinary_text_alone(text: str) -> None:
    assert find_hard_rule(text) is None


def test_hard_delete_kinds_cover_the_issue() -> None:
    for kind in (
        "namespace",
        "persistentvolume",
        "persistentvolumeclaim",
        "clusterrole",
        "clusterrolebinding",
        "customresourcedefinition",
        "node",
    ):
        assert kind in HARD_DELETE_KINDS
