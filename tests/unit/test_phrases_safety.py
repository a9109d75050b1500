"""services/safety.py speaks every language (issue 11): every text it writes for people (a blocked reason, each
score reason, each constraint, the rollback description) is a phrase the zh-CN and zh-TW catalogs translate
whole, values and nested phrases included, while the English stays exactly as it was."""

from __future__ import annotations

import re
import shlex
import unicodedata
from collections.abc import Iterator
from typing import Any

import pytest

from bot.render import PhraseBook, phrase_book
from services import safety
from services.safety import Assessment, NamespacePolicy, assess
from tests.unit.test_i18n import english_left, service_phrases

POLICY = NamespacePolicy()
K = frozenset({"kubectl"})
CHINESE = ("zh-CN", "zh-TW")

# Identifiers that a translation keeps as they are: kubectl commands and subcommands named in a sentence
# ("use logs or exec instead", "(rollout undo)"), programs (sudo, mkfs), the "prod" class of namespaces, and
# "shell", which Chinese technical writing keeps in Latin letters.
KEEP = {
    "prod", "shell", "sudo", "mkfs", "edit", "patch", "set", "logs", "exec", "rollout", "undo", "history", "resume",
    "pause", "cordon", "uncordon", "serviceaccount", "secret",
}
# A flag (--dry-run=server, -n, --replicas={replicas}) is an identifier wherever it appears.
_FLAG = re.compile(r"(?<![\w-])--?[A-Za-z][\w.-]*(?:=[^\s，。；：、（）]*)?")

# (command, allowed tools, current replicas read before). Every refusal, hard rule, blocked verb and flag,
# base label, namespace class, penalty, selector combination, constraint and rollback kind is here.
CORPUS: list[tuple[Any, frozenset[str], int | None]] = [
    (command, tools, None)
    for command, tools in [
        # read-only
        ("kubectl get pods", K), ("kubectl -n prod get pods -o wide", K), ("kubectl get pods -A", K),
        ("kubectl -n prod get secret db -o yaml", K), ("kubectl top node", K), ("kubectl version", K),
        ("kubectl -n prod get pods -l app=x", K),
        # refused: the text itself
        ("", K), ("   \t ", K), ("kubectl " + "x" * 5000, K),
        ("kubectl get pods; ls", K), ("kubectl get pods & ls", K), ("kubectl get pods | sh", K),
        ("kubectl rollout restart deploy/`whoami`", K), ("kubectl annotate pod x 'a=$(id)'", K),
        ("kubectl get pods > /tmp/x", K), ("kubectl apply -f - < x.yaml", K), ("kubectl delete n\\s prod", K),
        ("kubectl get pods; ls & x", K), ("kubectl get pods & ls | x", K), ("kubectl get pods | sh > y", K),
        ("kubectl get `x` > y", K), ("kubectl get $(x) < y", K), ("kubectl get pods > y; z", K),
        ("kubectl apply -f - < x; y", K), ("kubectl get n\\s; x", K), ("kubectl get pods; ls $HOME", K),
        ("kubectl get pods; ls | sh > y", K),
        ("kubectl get pods\nls", K), ("kubectl get pods\rls", K), ("kubectl get pods\nls; x", K),
        ("kubectl get po\x07ds", K), ("kubectl get pods\x00", K), ("kubectl get po\x07ds；x", K),
        ("kubectl get pods；ls", K), ("kubectl -n prоd get pods", K), ("kubectl delete n\u200bs prod", K),
        ("kubectl get pods\x85", K), ("kubectl get pods；ls\x07", K), ("kubectl get pods；ls | sh", K),
        ('kubectl annotate pod x "a=b', K),
        # refused: the tool
        ("/usr/bin/kubectl get pods", K), ("./kubectl get pods", K), ("sudo kubectl get pods", K),
        ("python3 -c x", K), ("docker ps", K), ("docker ps", frozenset()),
        ("kubectl get pods", frozenset({"systemctl"})),
        # refused: kubectl's flags and commands
        ("kubectl get --=x pods", K), ("kubectl delete --mystery ns prod", K), ("kubectl get pods --namespace", K),
        ("kubectl delete -X pod x", K), ("kubectl get pods -n", K), ("kubectl", K), ("kubectl -n prod", K),
        ("kubectl edit deploy/api", K), ("kubectl port-forward svc/api 8080:80", K), ("kubectl proxy", K),
        ("kubectl attach api-0", K), ("kubectl cp /etc/passwd api-0:/tmp/x", K),
        ("kubectl config use-context x", K), ("kubectl plugin list", K), ("kubectl completion bash", K),
        ("kubectl alpha debug x", K), ("kubectl apply edit-last-applied deploy/api", K), ("kubectl rollout", K),
        ("kubectl create token default", K), ("kubectl nuke everything", K), ("kubectl -p get logs x", K),
        ("kubectl --context other -n prod rollout restart deploy/api", K), ("kubectl --as=admin get pods", K),
        ("kubectl --profile=cpu get pods", K), ("kubectl --profile-output=x get pods", K),
        ("kubectl --log-file=x get pods", K), ("kubectl --log-dir=x get pods", K),
        ("kubectl create cm x --from-file=/home/bot/.kube/config", K),
        ("kubectl delete --raw /api/v1/namespaces/prod", K), ("kubectl -n 'prod x' get pods", K),
        ("kubectl scale deploy/api", K), ("kubectl scale deploy/api --replicas=many", K),
        ("kubectl scale deploy/api --replicas=3 --current-replicas=x", K), ("kubectl set sa deploy/api", K),
        ("kubectl rollout restart deploy/a b", K), ("kubectl delete deploy/", K), ("kubectl get .", K),
        ("kubectl cordon pod/x", K),
        # hard rules
        ("kubectl delete ns prod", K), ("kubectl delete pv data-1", K), ("kubectl -n prod delete pvc data-db-0", K),
        ("kubectl delete clusterrole admin", K), ("kubectl delete clusterrolebinding cluster-admin", K),
        ("kubectl delete crd x.example.com", K), ("kubectl delete node node-1", K),
        ("kubectl -n dev delete all -l app=x", K), ("kubectl delete api-extensions foo", K),
        ("kubectl -n dev delete pods --all", K), ("kubectl -n prod delete pvc --all", K),
        ("kubectl exec tools -- kubectl delete ns prod", K), ("kubectl exec tools -- kubectl delete pods --all", K),
        ("kubectl -n prod exec api-0 -- rm -rf /data", K), ("kubectl exec api-0 -- mkfs.ext4 /dev/sdb", K),
        ("kubectl exec api-0 -- dd if=/dev/zero of=/dev/sda", K), ("kubectl exec api-0 -- shutdown -h now", K),
        ("kubectl rollout restart deploy/reboot", K),
        ('psql -c "DROP TABLE users"', frozenset({"psql"})), ('psql -c "DROP/**/DATABASE app"', frozenset({"psql"})),
        ("psql -c 'drop schema x'", frozenset({"psql"})), ("psql -c 'truncate audit'", frozenset({"psql"})),
        ('ssh bastion "kubectl delete ns prod"', frozenset({"ssh"})), ("ssh node-1 sudo reboot", frozenset({"ssh"})),
        ("kubectl get pods; rm -rf /", K), ("sudo reboot", K),
        # scores: bases, namespace classes, penalties, constraints, rollbacks
        ("kubectl annotate deploy/api note=restarted", K), ("kubectl -n prod rollout restart deployment/api", K),
        ("kubectl -n kube-system rollout restart deploy/coredns", K),
        ("kubectl -n team-dev rollout restart deploy/api", K), ("kubectl -n staging rollout undo deploy/api", K),
        ("kubectl -n prod rollout undo deployment/api", K), ("kubectl rollout undo deployment", K),
        ("kubectl -n payments-prod rollout restart sts/db", K), ("kubectl -n prod rollout restart deployment", K),
        ("kubectl -n prod rollout restart deployment -l app=api", K),
        ("kubectl -n prod rollout restart deploy/a deploy/b", K), ("kubectl rollout restart", K),
        ("kubectl -n prod scale deploy/api --replicas=3", K),
        ("kubectl scale deploy/api --replicas=5 --current-replicas=3", K),
        ("kubectl scale deploy/api --replicas=1 --current-replicas=3", K),
        ("kubectl -n prod scale deploy/api --replicas 0", K), ("kubectl scale deploy/a deploy/b --replicas=2", K),
        ("kubectl cordon node-1", K), ("kubectl uncordon node-1", K), ("kubectl cordon -l pool=a", K),
        ("kubectl drain node-1 --ignore-daemonsets --delete-emptydir-data", K),
        ("kubectl drain node-1 --disable-eviction --force", K),
        ("kubectl drain -l pool=a --field-selector=metadata.name=n1 --pod-selector=app=x", K),
        ("kubectl drain -l pool=a --pod-selector=app=x", K), ("kubectl drain node-1 --pod-selector=app=x", K),
        ("kubectl drain node-1 --field-selector=x=y --pod-selector=app=x", K),
        ("kubectl delete pod api-0", K), ("kubectl -n prod delete pod x --grace-period=0 --force", K),
        ("kubectl delete pod x --now", K), ("kubectl -n prod delete pods -l app=api", K),
        ("kubectl delete pods --field-selector=status.phase=Failed", K),
        ("kubectl delete pods -l app=x --field-selector=status.phase=Failed", K),
        ("kubectl -n prod delete pod a b c", K), ("kubectl delete deployment api", K),
        ("kubectl -n kube-system delete deploy coredns --force", K),
        ("kubectl -n staging delete deploy api --cascade=orphan", K), ("kubectl delete -f app.yaml", K),
        ("kubectl delete certificates.cert-manager.io web", K), ("kubectl delete pods -l app=x -A", K),
        ("kubectl annotate pods --all note=x", K), ("kubectl label pv data-1 tier=gold", K),
        ("kubectl annotate clusterrole view a=b", K), ("kubectl label ns prod team=sre", K),
        ("kubectl -n prod set image deploy/api api=repo/api:1.2", K), ("kubectl set env deploy/api LOG_LEVEL=debug", K),
        ("kubectl set resources deploy/api -c=api --limits=cpu=200m", K),
        ("kubectl -n prod patch deploy api -p '{}'", K), ("kubectl patch svc api -p '{}'", K),
        ("kubectl set image deploy/api api=x:1 -l app=api", K), ("kubectl apply -f deploy.yaml", K),
        ("kubectl apply -f https://example.com/x.yaml", K), ("kubectl -n prod apply -f dir/ --prune --all", K),
        ("kubectl replace --force -f deploy.yaml", K), ("kubectl -n prod exec api-0 -- ls /tmp", K),
        ("kubectl -n dev debug api-0 -it --image=busybox", K), ("kubectl rollout pause deploy/api", K),
        ("kubectl rollout resume deploy/api", K), ("kubectl create clusterrolebinding x --clusterrole=view", K),
        ("kubectl -n dev create deployment x --image=nginx", K),
        ("kubectl taint nodes node-1 dedicated=db:NoSchedule", K), ("kubectl autoscale deploy api --min 2 --max 5", K),
        ("kubectl run tmp --image=busybox -- sleep 5", K), ("kubectl certificate approve csr-1", K),
        ("kubectl certificate deny", K), ("kubectl auth reconcile -f rbac.yaml", K),
        ("systemctl restart nginx", frozenset({"kubectl", "systemctl"})), ("ssh node-1 uptime", frozenset({"ssh"})),
        (None, K),
    ]
] + [
    ("kubectl -n prod scale deploy/api --replicas=3", K, 2),
    ("kubectl -n prod scale deploy/api --replicas=3", K, 5),
]


def _assess(command: Any, tools: frozenset[str], replicas: int | None) -> Assessment:
    return assess(command, policy=POLICY, allowed_tools=tools, auto_enabled=True, trusted=True,
                  current_replicas=replicas)


def _failed_scoring(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, frozenset[str], Assessment]]:
    """An unexpected error while scoring: a human decides (and a hard rule in the text still blocks)."""
    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("boom")

    with monkeypatch.context() as patch:
        patch.setattr(safety, "blast_radius", broken)
        commands = ("kubectl -n dev get pods", "kubectl exec x -- rm -rf /")
        return [(command, K, _assess(command, K, None)) for command in commands]


def texts(assessment: Assessment) -> list[str]:
    """Every text of an assessment that people read."""
    out = [assessment.blocked_reason or "", *assessment.score.reasons]
    if assessment.spec is not None:
        out += [*assessment.spec.constraints, assessment.spec.rollback.description]
    return [text for text in out if text]


def context(command: Any, tools: frozenset[str], assessment: Assessment) -> dict[str, Any]:
    """The data of one case: the command, its words and flag values, the allowed tools, what Python said about
    it, the names of its characters, and the spec's identifiers (kinds, names, the rollback and rehearsal
    commands). Flags are taken out of it as they are out of the text."""
    text = command if isinstance(command, str) else repr(command)
    tokens = text.split()
    data: list[str] = [type(command).__name__, assessment.error or "", "kubeconfig", *tools]
    data += [token.partition("=")[2] for token in tokens if "=" in token]
    data += [repr(word) for token in tokens for word in (token, token.rsplit("/", 1)[-1])]  # quoted in reasons
    data += [unicodedata.name(char, "").lower() for char in text if ord(char) > 127]
    try:
        shlex.split(text)
    except ValueError as exc:
        data.append(str(exc))
    spec = assessment.spec
    if spec is not None:
        data += [spec.tool, spec.verb, spec.kind or "", spec.name or "", spec.namespace or "", *spec.resources]
        data += [spec.rollback.command or "", " ".join(spec.dry_run_argv or ())]
    values = [text, *tokens, *(value for value in data if value)]
    return {"data": [_FLAG.sub(" ", value) for value in values]}


def cases(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, frozenset[str], Assessment]]:
    for command, tools, replicas in CORPUS:
        yield command, tools, _assess(command, tools, replicas)
    yield from _failed_scoring(monkeypatch)


def _left(translated: str, ctx: dict[str, Any]) -> list[str]:
    return [word for word in english_left(_FLAG.sub(" ", translated), ctx) if word.lower() not in KEEP]


@pytest.mark.parametrize("lang", CHINESE)
def test_every_safety_text_is_translated(lang: str, monkeypatch: pytest.MonkeyPatch) -> None:
    book = phrase_book(lang)
    count = 0
    for command, tools, assessment in cases(monkeypatch):
        ctx = context(command, tools, assessment)
        for text in texts(assessment):
            translated = book.translate(text)
            left = _left(translated, ctx)
            assert not left, f"{lang}: {command!r}: {text!r} → {translated!r} still has English {left}"
            count += 1
    assert count > 500


def test_english_is_the_text_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    book = phrase_book("en")
    for _command, _tools, assessment in cases(monkeypatch):
        for text in texts(assessment):
            assert book.translate(text) == text


def _english(command: str, tools: frozenset[str] = K) -> Assessment:
    return _assess(command, tools, None)


def test_the_english_stays_as_it_was() -> None:
    """Marking the text changed no English: a few of each kind, pinned by value."""
    assert _english("kubectl -n prod rollout restart deployment/api").score.summary == (
        "rollout restart 8 × prod 1.5 = 12")
    assert _english("kubectl delete pods -l app=x -A").score.summary == (
        "delete pod 10 × all namespaces 2 + --all-namespaces 30 + selector app=x 20 = 70")
    assert _english("kubectl -n kube-system delete deploy coredns --force").score.reasons == (
        "delete deployment 60", "× kube-system 2", "+ --force 15", "= 135 → 99 (only hard rules score 100)")
    assert _english("kubectl drain -l pool=a --field-selector=metadata.name=n1 --pod-selector=app=x").score.summary == (
        "drain 45 + selector pool=a; field metadata.name=n1; pods app=x 20 = 65")
    assert _english("kubectl get pods; ls $HOME").blocked_reason == (
        "shell metacharacter ';' (a second command), shell metacharacter '$' (variable or command substitution: "
        "$(…), ${…}): commands run without a shell, one command per proposal")
    assert _english("kubectl get\x07 pods；ls").blocked_reason == (
        "control character U+0007, non-ASCII character U+FF1B fullwidth semicolon: commands must be plain ASCII "
        "text, so the card shows exactly what runs")
    both = _english("kubectl get pods; rm -rf /")
    assert both.blocked_reason == (
        "hard rule: rm -r (recursive delete); shell metacharacter ';' (a second command): commands run without a "
        "shell, one command per proposal")
    assert both.score.reasons[:2] == (
        "hard rule: rm -r (recursive delete)",
        "blocked: shell metacharacter ';' (a second command): commands run without a shell, one command per proposal")
    assert _english("kubectl exec tools -- kubectl delete ns prod").blocked_reason == (
        "hard rule: deleting a namespace (nested command)")
    assert _english("kubectl --log-dir=x get pods").blocked_reason == "--log-dir writes files on the host running the bot"
    assert _english("docker ps", frozenset()).blocked_reason == (
        "tool 'docker' is not allowed (allowed: none; names are case-sensitive); add it to ALERTPILOT_ALLOWED_TOOLS "
        "to allow it")
    undo = _english("kubectl rollout undo deployment")
    assert undo.spec is not None and undo.spec.constraints == (
        "namespace from the kubeconfig context (none given)",
        "every deployment in the namespace",
        "rehearsed first with --dry-run=server",
        "rollback: undo of an undo: pick the revision by hand (rollout history)",
    )
    assert undo.score.summary == "rollout undo 15 + no name (every deployment) 25 = 40"
    drain = _english("kubectl drain node-1 --ignore-daemonsets --delete-emptydir-data")
    assert drain.spec is not None
    assert drain.spec.rollback.description == "make the node schedulable again; evicted pods are not moved back"


def test_nested_phrases_translate_inside_out() -> None:
    both = _english("kubectl get pods; rm -rf /")
    assert phrase_book("zh-TW").translate(both.blocked_reason) == (
        "硬性規則：rm -r（遞迴刪除）；shell 中繼字元 ';'（第二個指令）：指令不經 shell 執行，每個修復建議只能有一個指令")
    assert phrase_book("zh-CN").translate(_english("kubectl delete pods -l app=x -A").score.reasons[1]) == (
        "× 所有命名空间 2")


def test_every_safety_phrase_is_exercised(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each message id services/safety.py marks is recognised somewhere in the corpus (nested ones too): a book
    whose translations are markers tells which ones matched."""
    msgids = sorted(msgid for msgid, where in service_phrases().items() if where.startswith("services/safety.py"))
    names = re.compile(r"%\((\w+)\)s")
    markers = {
        msgid: f"⟦{index}⟧" + "".join(f"⟨%({name})s⟩" for name in dict.fromkeys(names.findall(msgid)))
        for index, msgid in enumerate(msgids)
    }
    book = PhraseBook(markers)
    seen: set[int] = set()
    for _command, _tools, assessment in cases(monkeypatch):
        for text in texts(assessment):
            seen |= {int(found) for found in re.findall(r"⟦(\d+)⟧", book.translate(text))}
    missing = [msgids[index] for index in range(len(msgids)) if index not in seen]
    assert not missing, f"not exercised by the corpus: {missing}"


def test_a_long_list_of_problems_is_translated_whole() -> None:
    """"a, (b, (c, (d)))" inside "blocked: …: why" nests six phrases deep (the book goes eight deep)."""
    command = "kubectl get pods $(x) | sh > y; z"
    reason = _english(command).score.reasons[0]
    assert not _left(phrase_book("zh-CN").translate(reason), context(command, K, _english(command)))
