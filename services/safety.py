"""The safe remediation policy, its pure core (DESIGN §1.4): parse a proposed command, score its blast
radius, pick the approval tier.

Three steps, all without I/O:

1. ``parse_command`` turns a command string into a frozen ``RemediationSpec`` (tool, verb, resource,
   namespace, flags, target state, dry-run plan, constraints and a rollback plan derived from the verb).
   It uses ``shlex`` and never a shell. Anything a shell would treat specially is refused *before*
   ``shlex`` sees it, so quotes cannot hide a ``;`` or a ``$(``.
2. ``blast_radius`` scores the spec 0–100: a base score per verb (``BASE_SCORES``) times a namespace
   multiplier (``NamespacePolicy``) plus flag penalties (``PENALTIES``), rounded up. Hard rules
   (``HARD_DELETE_KINDS`` and ``find_hard_rule``) score 100. Everything else is capped at 99, so a
   blocked command always has a named rule behind it.
3. ``tier_for`` maps the score to a tier; ``assess`` runs all three and never raises: an unsafe or
   unparseable command is blocked with its reason, and an unexpected error escalates to one approver.

The tables below are the README's "Safety" tables; keep them in step.
"""

from __future__ import annotations

import math
import re
import shlex
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from fnmatch import fnmatchcase
from types import MappingProxyType
from typing import Any

import structlog

from services.errors import AlertpilotError
from services.phrases import N_, phrase

log = structlog.get_logger(__name__)

__all__ = [
    "BASE_SCORES",
    "HARD_DELETE_KINDS",
    "PENALTIES",
    "REQUIRED_APPROVALS",
    "Assessment",
    "NamespacePolicy",
    "RemediationSpec",
    "Rollback",
    "Score",
    "Tier",
    "UnsafeCommand",
    "assess",
    "blast_radius",
    "find_hard_rule",
    "is_trusted",
    "parse_command",
    "tier_for",
]


class UnsafeCommand(AlertpilotError):
    """The command cannot be run from chat at all: shell syntax, unparseable, a tool that is not
    allowed, or a kubectl form that cannot be scored. ``reason`` says which, for the card."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Tier(StrEnum):
    AUTO = "auto"
    ONE = "one_approver"
    TWO = "two_approvers"
    BLOCKED = "blocked"


REQUIRED_APPROVALS: Mapping[Tier, int] = MappingProxyType({Tier.AUTO: 0, Tier.ONE: 1, Tier.TWO: 2, Tier.BLOCKED: 0})

AUTO_MAX = 10  # ≤ 10: auto (when enabled and trusted), else one approver
ONE_APPROVER_MAX = 50  # 11–50: one approver
BLOCKED_SCORE = 100  # 100: blocked; 51–99: two distinct approvers
MAX_APPROVABLE = 99  # arithmetic alone never blocks: only hard rules and unsafe commands reach 100
ERROR_SCORE = 50  # what an unexpected scoring error counts as: a human decides, never auto
MAX_COMMAND_LENGTH = 4000

PLAYBOOK_MIN_RUNS = 3
PLAYBOOK_MIN_SUCCESS_PERCENT = 80

PROD_MULTIPLIER = 1.5
CRITICAL_MULTIPLIER = 2.0
LOW_MULTIPLIER = 0.5
WORST_MULTIPLIER = max(PROD_MULTIPLIER, CRITICAL_MULTIPLIER)  # all namespaces, cluster-wide kinds

# --- the README tables -------------------------------------------------------------------------------

#: Base score per verb (and per kind for delete). Read verbs 0–2; the rest by how much can break and how
#: hard it is to undo.
BASE_SCORES: Mapping[str, int] = MappingProxyType(
    {
        # read-only
        "get": 0,
        "describe": 0,
        "top": 0,
        "explain": 0,
        "events": 0,
        "api-resources": 0,
        "api-versions": 0,
        "version": 0,
        "wait": 0,
        "kustomize": 0,
        "auth can-i": 0,
        "auth whoami": 0,
        "rollout status": 0,
        "rollout history": 0,
        "logs": 1,
        "cluster-info": 1,
        "diff": 2,
        "get secret values": 40,  # `get secret -o yaml|json|jsonpath…` posts credentials into the chat
        # changes
        "annotate": 5,
        "label": 5,
        "uncordon": 5,
        "scale up": 6,
        "rollout restart": 8,
        "rollout pause": 10,
        "rollout resume": 10,
        "certificate deny": 10,
        "scale down": 12,
        "scale (direction unknown)": 12,  # the higher of up and down until the current count is known
        "cordon": 15,
        "rollout undo": 15,
        "autoscale": 15,
        "expose": 20,
        "set image": 25,
        "set env": 25,
        "set resources": 25,
        "patch": 30,
        "taint": 30,
        "create": 30,
        "set serviceaccount": 30,
        "scale to 0": 35,
        "apply": 35,
        "replace": 35,
        "run": 40,
        "set selector": 40,
        "set subject": 40,
        "drain": 45,
        "exec": 60,
        "debug": 60,
        "auth reconcile": 60,
        "certificate approve": 60,
        # deletes, by kind
        "delete pod": 10,
        "delete job": 20,
        "delete replicaset": 25,
        "delete cronjob": 40,
        "delete horizontalpodautoscaler": 40,
        "delete poddisruptionbudget": 40,
        "delete service": 55,
        "delete configmap": 55,
        "delete ingress": 55,
        "delete networkpolicy": 55,
        "delete deployment": 60,
        "delete daemonset": 60,
        "delete role": 60,
        "delete rolebinding": 60,
        "delete serviceaccount": 60,
        "delete secret": 65,
        "delete statefulset": 70,
        "delete (other kind)": 70,
        "delete -f (manifest files)": 70,
        # tools other than kubectl (only when ALERTPILOT_ALLOWED_TOOLS lists them)
        "other tool": 40,
        "ssh": 60,
    }
)

#: Flag penalties, added after the namespace multiplier, for commands that change something.
PENALTIES: Mapping[str, int] = MappingProxyType(
    {
        "--force": 15,
        "--grace-period=0": 15,  # any value 0 or 1 (immediate kill)
        "--now": 15,
        "--all-namespaces": 30,  # also -A
        "--all": 25,  # not on delete: `delete --all` is a hard rule
        "no name (every resource of the kind)": 25,  # `rollout restart deployment` restarts all of them
        "selector on delete": 20,  # -l / --selector / --field-selector; also on drain, cordon, taint
        "selector": 10,  # on other changes
        "--cascade=orphan": 15,
        "several resources": 10,
        "manifest from a URL": 20,
        "--prune": 25,
        "--disable-eviction": 15,
        "--delete-emptydir-data": 10,
    }
)

#: Deleting these is a hard rule (score 100, blocked).
HARD_DELETE_KINDS: Mapping[str, str] = MappingProxyType(
    {
        "namespace": N_("deleting a namespace"),
        "persistentvolume": N_("deleting a persistent volume"),
        "persistentvolumeclaim": N_("deleting a persistent volume claim"),
        "clusterrole": N_("deleting a cluster role"),
        "clusterrolebinding": N_("deleting a cluster role binding"),
        "customresourcedefinition": N_("deleting a custom resource definition"),
        "node": N_("deleting a node"),
        "all": N_("deleting every resource type (delete all)"),
        "api-extensions": N_("deleting API extensions (CRDs, webhooks, API services)"),
    }
)

# --- kinds -------------------------------------------------------------------------------------------

_KIND_ALIASES: Mapping[str, str] = MappingProxyType(
    {
        alias: kind
        for kind, aliases in {
            "pod": ("po", "pod", "pods"),
            "deployment": ("deploy", "deployment", "deployments"),
            "statefulset": ("sts", "statefulset", "statefulsets"),
            "daemonset": ("ds", "daemonset", "daemonsets"),
            "replicaset": ("rs", "replicaset", "replicasets"),
            "replicationcontroller": ("rc", "replicationcontroller", "replicationcontrollers"),
            "service": ("svc", "service", "services"),
            "configmap": ("cm", "configmap", "configmaps"),
            "secret": ("secret", "secrets"),
            "namespace": ("ns", "namespace", "namespaces"),
            "persistentvolume": ("pv", "persistentvolume", "persistentvolumes"),
            "persistentvolumeclaim": ("pvc", "persistentvolumeclaim", "persistentvolumeclaims"),
            "node": ("no", "node", "nodes"),
            "clusterrole": ("clusterrole", "clusterroles"),
            "clusterrolebinding": ("clusterrolebinding", "clusterrolebindings"),
            "customresourcedefinition": ("crd", "crds", "customresourcedefinition", "customresourcedefinitions"),
            "job": ("job", "jobs"),
            "cronjob": ("cj", "cronjob", "cronjobs"),
            "ingress": ("ing", "ingress", "ingresses"),
            "horizontalpodautoscaler": ("hpa", "horizontalpodautoscaler", "horizontalpodautoscalers"),
            "poddisruptionbudget": ("pdb", "poddisruptionbudget", "poddisruptionbudgets"),
            "networkpolicy": ("netpol", "networkpolicy", "networkpolicies"),
            "role": ("role", "roles"),
            "rolebinding": ("rolebinding", "rolebindings"),
            "serviceaccount": ("sa", "serviceaccount", "serviceaccounts"),
            "endpoints": ("ep", "endpoints"),
            "event": ("ev", "event", "events"),
            "storageclass": ("sc", "storageclass", "storageclasses"),
            "priorityclass": ("pc", "priorityclass", "priorityclasses"),
            "certificatesigningrequest": ("csr", "certificatesigningrequest", "certificatesigningrequests"),
            "mutatingwebhookconfiguration": ("mutatingwebhookconfiguration", "mutatingwebhookconfigurations"),
            "validatingwebhookconfiguration": ("validatingwebhookconfiguration", "validatingwebhookconfigurations"),
            "apiservice": ("apiservice", "apiservices"),
            "all": ("all",),
            "api-extensions": ("api-extensions",),
        }.items()
        for alias in aliases
    }
)
# Cluster-scoped kinds change things for every namespace: they weigh like "all namespaces" (×2). Nodes
# are the exception: node verbs have fixed bases and no multiplier. A namespace is weighed as itself.
_CLUSTER_SCOPED = frozenset(
    {
        "persistentvolume",
        "clusterrole",
        "clusterrolebinding",
        "customresourcedefinition",
        "storageclass",
        "priorityclass",
        "certificatesigningrequest",
        "mutatingwebhookconfiguration",
        "validatingwebhookconfiguration",
        "apiservice",
    }
)
_WORKLOAD_KINDS = frozenset({"deployment", "statefulset", "daemonset"})

# --- kubectl verbs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Verb:
    mutating: bool
    dry_run: bool  # kubectl has --dry-run for it; otherwise the rehearsal is a `get` of the target
    shape: str  # how the positionals read: resources | assign | nodes | pod | none | create | run | top | sa
    node: bool = False  # targets nodes: fixed base, no namespace multiplier


_READ = _Verb(mutating=False, dry_run=False, shape="resources")
_READ_NONE = _Verb(mutating=False, dry_run=False, shape="none")
_VERBS: Mapping[str, _Verb] = MappingProxyType(
    {
        "get": _READ,
        "describe": _READ,
        "wait": _READ,
        "rollout status": _READ,
        "rollout history": _READ,
        "logs": _Verb(mutating=False, dry_run=False, shape="pod"),
        "top": _Verb(mutating=False, dry_run=False, shape="top"),
        "explain": _READ_NONE,
        "events": _READ_NONE,
        "api-resources": _READ_NONE,
        "api-versions": _READ_NONE,
        "version": _READ_NONE,
        "cluster-info": _READ_NONE,
        "kustomize": _READ_NONE,
        "diff": _READ_NONE,
        "auth can-i": _READ_NONE,
        "auth whoami": _READ_NONE,
        "annotate": _Verb(mutating=True, dry_run=True, shape="assign"),
        "label": _Verb(mutating=True, dry_run=True, shape="assign"),
        "rollout restart": _Verb(mutating=True, dry_run=False, shape="resources"),
        "rollout pause": _Verb(mutating=True, dry_run=False, shape="resources"),
        "rollout resume": _Verb(mutating=True, dry_run=False, shape="resources"),
        "rollout undo": _Verb(mutating=True, dry_run=True, shape="resources"),
        "scale": _Verb(mutating=True, dry_run=True, shape="resources"),
        "autoscale": _Verb(mutating=True, dry_run=True, shape="resources"),
        "expose": _Verb(mutating=True, dry_run=True, shape="resources"),
        "set image": _Verb(mutating=True, dry_run=True, shape="assign"),
        "set env": _Verb(mutating=True, dry_run=True, shape="assign"),
        "set resources": _Verb(mutating=True, dry_run=True, shape="resources"),
        "set selector": _Verb(mutating=True, dry_run=True, shape="assign"),
        "set serviceaccount": _Verb(mutating=True, dry_run=True, shape="sa"),
        "set subject": _Verb(mutating=True, dry_run=True, shape="resources"),
        "patch": _Verb(mutating=True, dry_run=True, shape="resources"),
        "apply": _Verb(mutating=True, dry_run=True, shape="resources"),
        "replace": _Verb(mutating=True, dry_run=True, shape="resources"),
        "create": _Verb(mutating=True, dry_run=True, shape="create"),
        "run": _Verb(mutating=True, dry_run=True, shape="run"),
        "delete": _Verb(mutating=True, dry_run=True, shape="resources"),
        "cordon": _Verb(mutating=True, dry_run=True, shape="nodes", node=True),
        "uncordon": _Verb(mutating=True, dry_run=True, shape="nodes", node=True),
        "drain": _Verb(mutating=True, dry_run=True, shape="nodes", node=True),
        "taint": _Verb(mutating=True, dry_run=True, shape="assign", node=True),
        "exec": _Verb(mutating=True, dry_run=False, shape="pod"),
        "debug": _Verb(mutating=True, dry_run=False, shape="pod"),
        "auth reconcile": _Verb(mutating=True, dry_run=True, shape="none"),
        "certificate approve": _Verb(mutating=True, dry_run=False, shape="csr"),
        "certificate deny": _Verb(mutating=True, dry_run=False, shape="csr"),
    }
)
_VERB_ALIASES = {"set sa": "set serviceaccount"}
_SUBCOMMAND_GROUPS = frozenset({"rollout", "set", "auth", "certificate"})
_BLOCKED_VERBS: Mapping[str, str] = MappingProxyType(
    {
        "edit": N_("kubectl edit opens an interactive editor; propose a patch or set command instead"),
        "port-forward": N_("kubectl port-forward runs until stopped and opens a port on the bot host"),
        "proxy": N_("kubectl proxy runs until stopped and opens the API server on the bot host"),
        "attach": N_("kubectl attach streams until stopped; use logs or exec instead"),
        "cp": N_("kubectl cp reads or writes files on the host running the bot (its kubeconfig, its secrets)"),
        "config": N_("kubectl config changes the kubeconfig the executor itself uses"),
        "plugin": N_("kubectl plugins are other programs; they cannot be scored"),
        "completion": N_("kubectl completion is not a remediation"),
        "alpha": N_("kubectl alpha commands cannot be scored"),
    }
)

# Flags that change who runs the command or against which cluster (or write files on the bot host).
# The executor's own kubeconfig decides that; a proposal never does. Each reason is a phrase with the flag.
_WHO_WHERE = N_("--%(flag)s changes which cluster or identity kubectl uses; the executor's kubeconfig decides that")
_BLOCKED_FLAGS: Mapping[str, str] = MappingProxyType(
    {
        **{
            name: _WHO_WHERE
            for name in (
                "context",
                "kubeconfig",
                "server",
                "token",
                "as",
                "as-group",
                "as-uid",
                "as-user-extra",
                "cluster",
                "user",
                "username",
                "password",
                "certificate-authority",
                "client-certificate",
                "client-key",
                "insecure-skip-tls-verify",
                "tls-server-name",
                "kuberc",
            )
        },
        "profile": N_("--%(flag)s writes a profile file on the host running the bot"),
        "profile-output": N_("--%(flag)s writes a file on the host running the bot"),
        "log-file": N_("--%(flag)s writes a file on the host running the bot"),
        "log-dir": N_("--%(flag)s writes files on the host running the bot"),
        "cache-dir": N_("--%(flag)s writes files on the host running the bot"),
        "from-file": N_("--%(flag)s reads files on the host running the bot into the cluster"),
        "from-env-file": N_("--%(flag)s reads files on the host running the bot into the cluster"),
        "cert": N_("--%(flag)s reads files on the host running the bot into the cluster"),
        "key": N_("--%(flag)s reads files on the host running the bot into the cluster"),
    }
)
# Long flags that take the next token as their value when written without "=". Flags with an optional
# value (--dry-run, --cascade, --validate) and booleans never take the next token, as in kubectl.
_VALUE_FLAGS = frozenset(
    """
    namespace selector field-selector filename kustomize output template sort-by label-columns container
    containers replicas current-replicas resource-version grace-period timeout patch patch-file type
    to-revision revision since since-time tail limit-bytes max-log-requests pod-running-timeout image env
    from prefix keys limits requests field-manager subresource for chunk-size raw min max cpu-percent cpu
    port target-port protocol name external-ip load-balancer-ip session-affinity cluster-ip restart
    overrides labels annotations pod-selector skip-wait-for-delete-timeout request-timeout cache-dir v
    vmodule profile profile-output log-file log-dir context kubeconfig server token as as-group as-uid
    as-user-extra cluster user username password certificate-authority client-certificate client-key
    tls-server-name kuberc prune-allowlist prune-whitelist image-pull-policy copy-to target schedule
    from-literal from-file from-env-file cert key docker-server docker-username docker-password
    docker-email clusterrole role serviceaccount group verb resource resource-name non-resource-url
    aggregation-rule rule class default-backend duration audience max-unavailable min-available value
    hard scopes pod log-flush-frequency log-backtrace-at log-file-max-size stderrthreshold
    """.split()
)
# Long flags that never take the next token: booleans, and flags whose value is optional (--dry-run,
# --cascade, --validate: kubectl's NoOptDefVal). A flag in neither set, written without "=", is refused:
# if kubectl took the next word as its value, `--mystery ns prod` would hide the kind from the parser.
_BOOL_FLAGS = frozenset(
    """
    all all-namespaces force ignore-not-found interactive now recursive wait overwrite local record
    show-labels show-kind watch watch-only no-headers follow previous timestamps all-containers
    ignore-errors insecure-skip-tls-verify-backend quiet stdin tty ignore-daemonsets delete-emptydir-data
    delete-local-data disable-eviction server-side force-conflicts prune allow-missing-template-keys
    show-managed-fields disable-compression match-server-version warnings-as-errors help rm privileged
    attach leave-stdin-open keep-annotations keep-labels keep-liveness keep-readiness keep-startup
    keep-init-containers same-node share-processes replace list resolve show-events save-config
    windows-line-endings output-watch-events dry-run cascade validate insecure-skip-tls-verify
    skip-headers skip-log-headers one-output add-dir-header alsologtostderr logtostderr command expose
    use-openapi-print-columns exit-code no-prune openapi-patch enforce-namespace sort watch-events
    """.split()
)
_SHORT_FLAGS: Mapping[str, str] = MappingProxyType(
    {
        "n": "namespace",
        "l": "selector",
        "f": "filename",
        "k": "kustomize",
        "o": "output",
        "c": "container",
        "p": "patch",
        "e": "env",
        "L": "label-columns",
        "v": "v",
        "s": "server",
        "A": "all-namespaces",
        "i": "stdin",
        "t": "tty",
        "w": "watch",
        "R": "recursive",
        "q": "quiet",
        "h": "help",
    }
)
_SHORT_OVERRIDES: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        "logs": {"f": "follow", "p": "previous"},
        "delete": {"i": "interactive"},
        "exec": {"p": "pod"},
        "set env": {"c": "containers"},
        "set resources": {"c": "containers"},
    }
)
_FALSE = frozenset({"0", "f", "false"})
_SECRET_OUTPUTS = ("yaml", "json", "jsonpath", "go-template", "template", "custom-columns")
_NAMESPACE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", re.IGNORECASE)

# --- tools -------------------------------------------------------------------------------------------

# Shells, interpreters and wrappers run *another* command that cannot be scored: never allowed, even
# when ALERTPILOT_ALLOWED_TOOLS lists them.
_NEVER_TOOLS = frozenset(
    """
    sh bash zsh dash ksh mksh fish csh tcsh ash busybox sudo su doas pkexec runuser env xargs eval exec
    command builtin nohup timeout nice ionice setsid stdbuf chroot nsenter unshare watch time strace
    script expect perl ruby node nodejs deno bun php lua tclsh awk gawk mawk find parallel
    """.split()
)
_TOOL_BASES: Mapping[str, str] = MappingProxyType({"ssh": "ssh"})  # tool → its BASE_SCORES key
_INTERPRETER = re.compile(r"^(python|pypy|pwsh|powershell)[\d.]*$", re.IGNORECASE)

# --- characters --------------------------------------------------------------------------------------

# Checked on the raw string before shlex, quotes or not: `kubectl annotate pod x a="b;c"` is blocked too.
# That refuses a few harmless commands, and in exchange no quoting trick can smuggle shell syntax into a
# card that someone might paste into a terminal.
#
# What is wrong with a character, alone and followed by more problems (", …"): a list of problems reads as
# "a, (b, (c))", one phrase per item, each recognisable by its own text (and found at any depth of nesting).
_METACHARACTERS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        ";": (
            N_("shell metacharacter ';' (a second command)"),
            N_("shell metacharacter ';' (a second command), %(more)s"),
        ),
        "&": (
            N_("shell metacharacter '&' ('&&' or a background job)"),
            N_("shell metacharacter '&' ('&&' or a background job), %(more)s"),
        ),
        "|": (
            N_("shell metacharacter '|' (a pipe or '||')"),
            N_("shell metacharacter '|' (a pipe or '||'), %(more)s"),
        ),
        "`": (
            N_("shell metacharacter '`' (command substitution)"),
            N_("shell metacharacter '`' (command substitution), %(more)s"),
        ),
        "$": (
            N_("shell metacharacter '$' (variable or command substitution: $(…), ${…})"),
            N_("shell metacharacter '$' (variable or command substitution: $(…), ${…}), %(more)s"),
        ),
        ">": (
            N_("shell metacharacter '>' (redirection)"),
            N_("shell metacharacter '>' (redirection), %(more)s"),
        ),
        "<": (
            N_("shell metacharacter '<' (redirection)"),
            N_("shell metacharacter '<' (redirection), %(more)s"),
        ),
        "\\": (
            N_("shell metacharacter '\\' (escapes that make the card differ from what runs)"),
            N_("shell metacharacter '\\' (escapes that make the card differ from what runs), %(more)s"),
        ),
    }
)
_CHARACTER_PROBLEMS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "line": (N_("a line break (a second command)"), N_("a line break (a second command), %(more)s")),
        "control": (N_("control character U+%(code)s"), N_("control character U+%(code)s, %(more)s")),
        "non-ascii": (N_("non-ASCII character U+%(code)s"), N_("non-ASCII character U+%(code)s, %(more)s")),
    }
)

# --- hard rules in free text (defence in depth: raw text, unquoted text and argv, case-insensitive) ----

_TEXT_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bdrop\s+table\b"), "DROP TABLE"),
    (re.compile(r"\bdrop\s+database\b"), "DROP DATABASE"),
    (re.compile(r"\bdrop\s+schema\b"), "DROP SCHEMA"),
    (re.compile(r"(?<![\w.-])truncate(?![\w-])"), "TRUNCATE"),
    (re.compile(r"(?<![\w.-])mkfs(?![\w-])"), N_("mkfs (formats a filesystem)")),
    (re.compile(r"(?<![\w.-])dd\s[^\n]*?(?<![\w-])if="), N_("dd if= (raw disk copy)")),
    (re.compile(r"(?<![\w.-])(?:shutdown|reboot|poweroff|halt)(?![\w-])"), N_("shutdown/reboot of a machine")),
)
_RM_RULE = N_("rm -r (recursive delete)")
_RM = re.compile(r"(?<![\w.-])rm((?:\s+-\S*)+)")
_SQL_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
# A kubectl delete of a hard-rule kind written inside another command (ssh, exec, a quoted argument).
_NESTED_DELETE = re.compile(
    r"\bdelete\s+(?:(?:-\S*|[^\s=-][^\s=]*=\S*)\s+)*"
    r"(ns|namespaces?|pvc?s?|persistentvolumes?|persistentvolumeclaims?|clusterroles?|clusterrolebindings?"
    r"|crds?|customresourcedefinitions?|nodes?|no|all|api-extensions)(?=[\s/.,]|$)"
)
_NESTED_DELETE_ALL = re.compile(r"\bdelete\b[^\n]*?\s--all(?:=true)?(?=\s|$)")


# --- value objects -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NamespacePolicy:
    """Which namespaces weigh more or less. fnmatch globs, case-insensitive; the worst match wins
    (critical, then prod, then low). Built from settings by the caller."""

    prod: tuple[str, ...] = ("prod", "production", "*-prod")  # ×1.5
    critical: tuple[str, ...] = ("kube-system",)  # ×2
    low: tuple[str, ...] = ("dev", "*-dev", "staging")  # ×0.5

    @classmethod
    def parse(cls, prod_csv: str) -> NamespacePolicy:
        """From ALERTPILOT_PROD_NAMESPACES ("prod,production,*-prod"). ValueError names the bad entry."""
        entries = [entry.strip().lower() for entry in str(prod_csv).split(",")]
        entries = [entry for entry in entries if entry]
        if not entries:
            raise ValueError("ALERTPILOT_PROD_NAMESPACES is empty: list at least one namespace or glob")
        for entry in entries:
            if not re.fullmatch(r"[a-z0-9*?]([a-z0-9*?-]{0,61}[a-z0-9*?])?", entry):
                raise ValueError(
                    f"ALERTPILOT_PROD_NAMESPACES: {entry!r} is not a namespace name or glob "
                    "(lowercase letters, digits, '-', and the wildcards '*' and '?')"
                )
        return cls(prod=tuple(dict.fromkeys(entries)))

    def multiplier(self, namespace: str | None, *, all_namespaces: bool = False) -> tuple[float, str]:
        """(factor, label for the reasons): (1.5, "prod"), (2.0, "kube-system"), (0.5, "dev/staging"),
        (2.0, "all namespaces"); no namespace or an ordinary one → (1.0, "")."""
        if all_namespaces:
            return WORST_MULTIPLIER, "all namespaces"
        if not namespace:
            return 1.0, ""
        name = namespace.lower()
        if _matches(name, self.critical):
            return CRITICAL_MULTIPLIER, name
        if _matches(name, self.prod):
            return PROD_MULTIPLIER, "prod"
        if _matches(name, self.low):
            return LOW_MULTIPLIER, "dev/staging"
        return 1.0, ""


@dataclass(frozen=True)
class Rollback:
    kind: str  # rollout_undo | scale_back | uncordon | none | manual
    command: str | None  # for scale_back a template with "{replicas}", filled with the count read before
    description: str
    argv: tuple[str, ...] | None = None  # the same command as argv, for the executor (no shell)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "command": self.command,
            "description": self.description,
            "argv": list(self.argv) if self.argv is not None else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Rollback:
        argv = data.get("argv")
        return cls(
            kind=data["kind"],
            command=data.get("command"),
            description=data.get("description", ""),
            argv=tuple(argv) if argv is not None else None,
        )


@dataclass(frozen=True)
class RemediationSpec:
    raw: str
    argv: tuple[str, ...]
    tool: str
    verb: str  # "rollout restart", "scale", "delete", "set image", "get", …; generic tools: first word
    kind: str | None  # normalised: "deployment" for deploy/deployments/deployments.apps
    name: str | None  # the first resource's name
    namespace: str | None
    all_namespaces: bool
    selector: str | None
    flags: tuple[str, ...]  # normalised, in order: "--namespace=prod", "--force", "--grace-period=0"
    target_state: dict[str, Any] = field(hash=False)  # JSON-safe; read-only by convention
    dry_run_required: bool  # true for every kubectl verb that changes something
    constraints: tuple[str, ...]  # human-readable: "namespace prod only", "one resource: deployment/api"
    rollback: Rollback
    resources: tuple[str, ...] = ()  # every target: "deployment/api", "pod" (no name: every pod)
    mutating: bool = True
    # How to rehearse it: the argv with --dry-run=server, or, where kubectl has no dry run (rollout
    # restart/pause/resume, exec, debug, certificate), a `get` of the target. None: nothing to rehearse.
    dry_run_argv: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "raw": self.raw,
            "argv": list(self.argv),
            "tool": self.tool,
            "verb": self.verb,
            "kind": self.kind,
            "name": self.name,
            "namespace": self.namespace,
            "all_namespaces": self.all_namespaces,
            "selector": self.selector,
            "flags": list(self.flags),
            "target_state": _json_safe(self.target_state),
            "dry_run_required": self.dry_run_required,
            "constraints": list(self.constraints),
            "rollback": self.rollback.to_json(),
            "resources": list(self.resources),
            "mutating": self.mutating,
            "dry_run_argv": list(self.dry_run_argv) if self.dry_run_argv is not None else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RemediationSpec:
        dry_run_argv = data.get("dry_run_argv")
        return cls(
            raw=data["raw"],
            argv=tuple(data["argv"]),
            tool=data["tool"],
            verb=data["verb"],
            kind=data.get("kind"),
            name=data.get("name"),
            namespace=data.get("namespace"),
            all_namespaces=bool(data.get("all_namespaces", False)),
            selector=data.get("selector"),
            flags=tuple(data.get("flags", ())),
            target_state=dict(data.get("target_state", {})),
            dry_run_required=bool(data["dry_run_required"]),
            constraints=tuple(data.get("constraints", ())),
            rollback=Rollback.from_json(data["rollback"]),
            resources=tuple(data.get("resources", ())),
            mutating=bool(data.get("mutating", True)),
            dry_run_argv=tuple(dry_run_argv) if dry_run_argv is not None else None,
        )


@dataclass(frozen=True)
class Score:
    value: int  # 0–100
    reasons: tuple[str, ...]  # ("rollout restart 8", "× prod 1.5", "+ --force 15", "= 27")
    hard_rule: str | None = None

    @property
    def summary(self) -> str:
        """One line for the card: "rollout restart 8 × prod 1.5 = 12"."""
        return " ".join(self.reasons)

    def to_json(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "reasons": list(self.reasons),
            "hard_rule": self.hard_rule,
            "summary": self.summary,
        }


@dataclass(frozen=True)
class Assessment:
    command: str
    spec: RemediationSpec | None
    score: Score
    tier: Tier
    required_approvals: int
    blocked_reason: str | None  # why the card has no Approve button
    error: str | None  # an unexpected scoring error (the tier was escalated to a human)

    def to_json(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "spec": self.spec.to_json() if self.spec is not None else None,
            "score": self.score.to_json(),
            "tier": self.tier.value,
            "required_approvals": self.required_approvals,
            "blocked_reason": self.blocked_reason,
            "error": self.error,
        }


# --- parsing -----------------------------------------------------------------------------------------


def parse_command(command: str, *, allowed_tools: frozenset[str] = frozenset({"kubectl"})) -> RemediationSpec:
    """The command as a spec, or UnsafeCommand(reason) when it cannot be run from chat at all."""
    if not isinstance(command, str):
        raise UnsafeCommand(phrase("the command is a %(type)s, not text", type=type(command).__name__))
    if not command.strip():
        raise UnsafeCommand(phrase("the command is empty"))
    if len(command) > MAX_COMMAND_LENGTH:
        raise UnsafeCommand(phrase("the command is longer than %(limit)s characters", limit=MAX_COMMAND_LENGTH))
    _check_characters(command)
    try:
        argv = tuple(shlex.split(command, comments=False, posix=True))
    except ValueError as exc:
        raise UnsafeCommand(phrase("cannot parse the command: %(error)s", error=exc)) from None
    if not argv:
        raise UnsafeCommand(phrase("the command is empty"))
    tool = argv[0]
    _check_tool(tool, allowed_tools)
    if tool == "kubectl":
        return _parse_kubectl(command, argv)
    return _parse_other_tool(command, argv)


def _check_characters(command: str) -> None:
    problems: dict[str, tuple[str, dict[str, str], bool]] = {}  # text → (followed-by-more form, values, shell)
    for char in command:
        values: dict[str, str] = {}
        if char in _METACHARACTERS:
            (alone, followed), shell = _METACHARACTERS[char], True
        elif char in "\n\r":
            (alone, followed), shell = _CHARACTER_PROBLEMS["line"], True
        elif char == "\t":
            continue  # a tab separates words like a space; with no shell it is harmless
        elif ord(char) < 32 or ord(char) == 127:
            (alone, followed), shell = _CHARACTER_PROBLEMS["control"], False
            values = {"code": f"{ord(char):04X}"}
        elif ord(char) > 127:
            # Lookalikes (the fullwidth '；', a Cyrillic 'о' in "prоd") would make the card show
            # something other than what runs, so commands are plain ASCII.
            (alone, followed), shell = _CHARACTER_PROBLEMS["non-ascii"], False
            values = {"code": f"{ord(char):04X} {unicodedata.name(char, '').lower()}".rstrip()}
        else:
            continue
        problems.setdefault(phrase(alone, **values), (followed, values, shell))
    if problems:
        items = list(problems.items())
        listed = items[-1][0]
        for _text, (followed, values, _shell) in reversed(items[:-1]):  # "a, b, c" as "a, (b, (c))"
            listed = phrase(followed, more=listed, **values)
        if any(shell for _followed, _values, shell in problems.values()):
            raise UnsafeCommand(
                phrase("%(problems)s: commands run without a shell, one command per proposal", problems=listed)
            )
        raise UnsafeCommand(
            phrase(
                "%(problems)s: commands must be plain ASCII text, so the card shows exactly what runs",
                problems=listed,
            )
        )


def _check_tool(tool: str, allowed_tools: frozenset[str]) -> None:
    if "/" in tool:
        bare = tool.rsplit("/", 1)[-1] or tool
        raise UnsafeCommand(
            phrase(
                "%(tool)s is a path: write the bare tool name (%(bare)s); the executor resolves it, so a path "
                "cannot swap in another program",
                tool=repr(tool),
                bare=repr(bare),
            )
        )
    if tool.casefold() in _NEVER_TOOLS or _INTERPRETER.match(tool):
        raise UnsafeCommand(
            phrase(
                "%(tool)s runs other commands (a shell, an interpreter or a wrapper such as sudo); it is never "
                "allowed, not even through ALERTPILOT_ALLOWED_TOOLS",
                tool=repr(tool),
            )
        )
    if tool not in allowed_tools:
        allowed = ", ".join(sorted(allowed_tools))
        if not allowed:
            raise UnsafeCommand(
                phrase(
                    "tool %(tool)s is not allowed (allowed: none; names are case-sensitive); "
                    "add it to ALERTPILOT_ALLOWED_TOOLS to allow it",
                    tool=repr(tool),
                )
            )
        raise UnsafeCommand(
            phrase(
                "tool %(tool)s is not allowed (allowed: %(allowed)s; names are case-sensitive); "
                "add it to ALERTPILOT_ALLOWED_TOOLS to allow it",
                tool=repr(tool),
                allowed=allowed,
            )
        )


@dataclass
class _Scan:
    options: list[tuple[str, str | None]]  # (long name, value), in order
    positionals: list[str]
    after_dashes: list[str]  # what follows "--" (the in-container command of exec/debug/run)
    dashes: bool


def _scan_kubectl(tokens: Sequence[str], verb: str | None) -> _Scan:
    shorts = dict(_SHORT_FLAGS)
    if verb is not None:
        shorts.update(_SHORT_OVERRIDES.get(verb, {}))
    options: list[tuple[str, str | None]] = []
    positionals: list[str] = []
    after: list[str] = []
    dashes = False
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token == "--":
            after = list(tokens[i + 1 :])
            dashes = True
            break
        if token.startswith("--"):
            name, eq, value = token[2:].partition("=")
            name = name.casefold()
            if not name:
                raise UnsafeCommand(phrase("cannot read the flag %(flag)s", flag=repr(token)))
            if eq:
                options.append((name, value))
            elif name not in _VALUE_FLAGS and name not in _BOOL_FLAGS:
                raise UnsafeCommand(
                    phrase(
                        "unknown flag --%(flag)s: write it as --%(flag)s=value or leave it out "
                        "(an unknown flag might swallow the next word)",
                        flag=name,
                    )
                )
            elif name in _VALUE_FLAGS:
                if i + 1 >= len(tokens):
                    raise UnsafeCommand(phrase("--%(flag)s needs a value", flag=name))
                options.append((name, tokens[i + 1]))
                i += 1
            else:
                options.append((name, None))
        elif token.startswith("-") and token != "-":
            j = 1
            while j < len(token):
                letter = token[j]
                if letter not in shorts:
                    raise UnsafeCommand(
                        phrase("unknown flag -%(letter)s in %(token)s", letter=letter, token=repr(token))
                    )
                name = shorts[letter]
                if name in _VALUE_FLAGS:
                    rest = token[j + 1 :]
                    if rest:
                        options.append((name, rest.removeprefix("=")))
                    elif i + 1 < len(tokens):
                        options.append((name, tokens[i + 1]))
                        i += 1
                    else:
                        raise UnsafeCommand(phrase("-%(letter)s needs a value", letter=letter))
                    break
                options.append((name, None))
                j += 1
        else:
            positionals.append(token)
        i += 1
    return _Scan(options, positionals, after, dashes)


def _resolve_verb(positionals: Sequence[str]) -> tuple[str, int]:
    """(verb, how many positionals it used)."""
    if not positionals:
        raise UnsafeCommand(phrase("kubectl without a command"))
    first = positionals[0].casefold()
    if first in _BLOCKED_VERBS:
        raise UnsafeCommand(_BLOCKED_VERBS[first])
    if first in _SUBCOMMAND_GROUPS:
        if len(positionals) < 2:
            raise UnsafeCommand(phrase("kubectl %(group)s without a subcommand", group=first))
        verb = f"{first} {positionals[1].casefold()}"
        used = 2
    else:
        verb, used = first, 1
    if verb == "apply" and len(positionals) > 1 and positionals[1].casefold() == "edit-last-applied":
        raise UnsafeCommand(_BLOCKED_VERBS["edit"])
    if verb == "create" and len(positionals) > 1 and positionals[1].casefold() == "token":
        raise UnsafeCommand(phrase("kubectl create token prints a bearer token into the chat"))
    verb = _VERB_ALIASES.get(verb, verb)
    if verb not in _VERBS:
        raise UnsafeCommand(
            phrase(
                "unknown kubectl command %(command)s: only known commands can be scored "
                "(an unknown one may be a plugin, another program)",
                command=repr(" ".join(positionals[:used])),
            )
        )
    return verb, used


def _parse_kubectl(raw: str, argv: tuple[str, ...]) -> RemediationSpec:
    tokens = argv[1:]
    verb, used = _resolve_verb(_scan_kubectl(tokens, None).positionals)
    scan = _scan_kubectl(tokens, verb)
    again, used_again = _resolve_verb(scan.positionals)
    if again != verb or used_again != used:
        raise UnsafeCommand(phrase("flags before the command make it ambiguous; put them after the command"))
    info = _VERBS[verb]
    rest = scan.positionals[used:]
    if verb not in ("exec", "debug", "run"):
        rest = rest + scan.after_dashes  # after "--" kubectl still reads resources: `delete -- ns prod`

    for name, _value in scan.options:
        if name in _BLOCKED_FLAGS:
            raise UnsafeCommand(phrase(_BLOCKED_FLAGS[name], flag=name))
    opts = _last_values(scan.options)
    if "raw" in opts and info.mutating:
        raise UnsafeCommand(phrase("--raw sends a raw API request that cannot be scored"))

    namespace = opts.get("namespace")
    if "namespace" in opts:
        if not namespace or not _NAMESPACE_NAME.match(namespace):
            raise UnsafeCommand(phrase("%(namespace)s is not a valid namespace name", namespace=repr(namespace)))
        namespace = namespace.lower()
    all_namespaces = _truthy(opts, "all-namespaces")
    selector_parts = _selector_parts(opts, verb)
    selector = _selector_text(selector_parts)
    flags = tuple(_flag_text(name, value) for name, value in scan.options)
    filenames = [value for name, value in scan.options if name in ("filename", "kustomize") and value]

    resources, target_state, command_words = _read_positionals(verb, info, rest, scan, opts)
    if verb in ("exec", "debug", "run") and command_words:
        target_state["command"] = list(command_words)
    if filenames:
        target_state["manifests"] = filenames

    kind = resources[0][0] if resources else None
    name = resources[0][1] if resources else None
    resource_texts = tuple(f"{k}/{n}" if n else k for k, n in resources)
    if verb == "scale" and "replicas" not in target_state:
        raise UnsafeCommand(phrase("kubectl scale without --replicas"))

    rollback = _rollback(verb, info, namespace, resources, selector)
    dry_run_argv = _dry_run_argv(
        argv, info, namespace, all_namespaces, resources, opts.get("selector"), opts.get("field-selector"), scan.dashes
    )
    constraints = _constraints(
        verb, info, namespace, all_namespaces, resources, selector_parts, filenames, rollback, dry_run_argv
    )
    return RemediationSpec(
        raw=raw,
        argv=argv,
        tool="kubectl",
        verb=verb,
        kind=kind,
        name=name,
        namespace=namespace,
        all_namespaces=all_namespaces,
        selector=selector,
        flags=flags,
        target_state=target_state,
        dry_run_required=info.mutating,
        constraints=constraints,
        rollback=rollback,
        resources=resource_texts,
        mutating=info.mutating,
        dry_run_argv=dry_run_argv,
    )


def _selector_parts(opts: Mapping[str, str | None], verb: str) -> dict[str, str]:
    """The selectors given, in order: labels (-l), field (--field-selector), pods (drain's --pod-selector)."""
    parts = {
        "labels": opts.get("selector") or "",
        "field": opts.get("field-selector") or "",
        "pods": (opts.get("pod-selector") or "") if verb == "drain" else "",
    }
    return {name: value for name, value in parts.items() if value}


def _selector_text(parts: Mapping[str, str]) -> str | None:
    """The spec's selector: "app=api", "field status.phase=Failed", "app=api; field …; pods …" (data)."""
    words = {"labels": "", "field": "field ", "pods": "pods "}
    return "; ".join(words[name] + value for name, value in parts.items()) or None


# "selector …" (a constraint) and "+ selector … 20" (a penalty), one whole phrase per combination of selectors.
_SELECTOR_REASONS: Mapping[tuple[str, ...], tuple[str, str]] = MappingProxyType(
    {
        ("labels",): (N_("selector %(labels)s"), N_("+ selector %(labels)s %(points)s")),
        ("field",): (N_("selector field %(field)s"), N_("+ selector field %(field)s %(points)s")),
        ("pods",): (N_("selector pods %(pods)s"), N_("+ selector pods %(pods)s %(points)s")),
        ("labels", "field"): (
            N_("selector %(labels)s; field %(field)s"),
            N_("+ selector %(labels)s; field %(field)s %(points)s"),
        ),
        ("labels", "pods"): (
            N_("selector %(labels)s; pods %(pods)s"),
            N_("+ selector %(labels)s; pods %(pods)s %(points)s"),
        ),
        ("field", "pods"): (
            N_("selector field %(field)s; pods %(pods)s"),
            N_("+ selector field %(field)s; pods %(pods)s %(points)s"),
        ),
        ("labels", "field", "pods"): (
            N_("selector %(labels)s; field %(field)s; pods %(pods)s"),
            N_("+ selector %(labels)s; field %(field)s; pods %(pods)s %(points)s"),
        ),
    }
)


def _read_positionals(
    verb: str, info: _Verb, rest: list[str], scan: _Scan, opts: Mapping[str, str | None]
) -> tuple[list[tuple[str, str | None]], dict[str, Any], list[str]]:
    """(resources as (kind, name), target state, in-container command) for one verb's positionals."""
    state: dict[str, Any] = {}
    command_words = list(scan.after_dashes)
    resources: list[tuple[str, str | None]]
    if info.shape == "nodes":
        resources = [("node", _node_name(token)) for token in rest]
        state["schedulable"] = verb == "uncordon"
        if verb == "drain":
            state["drained"] = True
    elif info.shape == "assign":
        assignments = [t for t in rest if "=" in t or t.endswith("-") or (verb == "taint" and ":" in t)]
        targets = [t for t in rest if t not in assignments]
        resources = _resources(targets)
        state.update(_assignment_state(verb, assignments))
    elif info.shape == "pod":
        targets, extra = rest[:1], rest[1:]
        if verb in ("exec", "debug") and not scan.after_dashes:
            command_words = extra  # the old `kubectl exec pod cmd` form
        resources = _pod_targets(targets)
        if verb == "logs" and extra:
            state["container"] = extra[0]
    elif info.shape == "top":
        resources = _resources(rest)
    elif info.shape == "create":
        resources = _create_targets(rest)
    elif info.shape == "run":
        resources = [("pod", rest[0])] if rest else []
        if opts.get("image"):
            state["image"] = opts["image"]
    elif info.shape == "csr":
        resources = [("certificatesigningrequest", token) for token in rest]
        state["approved"] = verb == "certificate approve"
    elif info.shape == "sa":
        if len(rest) < 2:
            raise UnsafeCommand(phrase("kubectl set serviceaccount needs a resource and a service account name"))
        resources = _resources(rest[:-1])
        state["serviceaccount"] = rest[-1]
    elif info.shape == "none":
        resources = []
    else:
        resources = _resources(rest)

    if verb == "scale":
        state.update(_replicas_state(opts))
    elif verb == "rollout restart":
        state["restarted"] = True
    elif verb in ("rollout pause", "rollout resume"):
        state["paused"] = verb == "rollout pause"
    elif verb == "rollout undo":
        revision = opts.get("to-revision")
        state["revision"] = _int_or_text(revision) if revision not in (None, "", "0") else "previous"
    elif verb == "delete":
        state["deleted"] = [f"{k}/{n}" if n else k for k, n in resources]
    elif verb == "set resources":
        for key in ("limits", "requests", "containers"):
            if opts.get(key):
                state[key] = opts[key]
    elif verb == "patch":
        state["patch"] = opts.get("patch") or opts.get("patch-file") or ""
        state["patch_type"] = opts.get("type") or "strategic"
    elif verb == "autoscale":
        for key, target in (("min", "min"), ("max", "max"), ("cpu-percent", "cpu_percent")):
            if opts.get(key):
                state[target] = _int_or_text(opts[key])
    return resources, state, command_words


def _resources(tokens: Sequence[str]) -> list[tuple[str, str | None]]:
    """TYPE/NAME … or TYPE[,TYPE] [NAME …], as kubectl reads them."""
    if not tokens:
        return []
    if any("/" in token for token in tokens):
        if not all("/" in token for token in tokens):
            raise UnsafeCommand(phrase("mixes TYPE/NAME with separate names; kubectl rejects that"))
        out: list[tuple[str, str | None]] = []
        for token in tokens:
            type_part, _, name = token.partition("/")
            if not type_part or not name:
                raise UnsafeCommand(phrase("cannot read the resource %(resource)s", resource=repr(token)))
            out.extend((_kind(part), name) for part in type_part.split(","))
        return out
    kinds = [_kind(part) for part in tokens[0].split(",")]
    names = list(tokens[1:])
    if not names:
        return [(kind, None) for kind in kinds]
    return [(kind, name) for kind in kinds for name in names]


def _kind(token: str) -> str:
    base = token.casefold().split(".")[0].strip()
    if not base:
        raise UnsafeCommand(phrase("cannot read the resource type %(resource)s", resource=repr(token)))
    return _KIND_ALIASES.get(base, base)


def _node_name(token: str) -> str:
    if "/" in token:
        type_part, _, name = token.partition("/")
        if _kind(type_part) != "node" or not name:
            raise UnsafeCommand(phrase("%(resource)s is not a node", resource=repr(token)))
        return name
    return token


def _pod_targets(tokens: Sequence[str]) -> list[tuple[str, str | None]]:
    if not tokens:
        return []
    token = tokens[0]
    if "/" in token:
        return _resources([token])
    return [("pod", token)]


def _create_targets(rest: Sequence[str]) -> list[tuple[str, str | None]]:
    if not rest:
        return []  # create -f …
    kind = _kind(rest[0])
    names = list(rest[1:])
    if kind in ("secret", "service") and names and names[0].casefold() in (
        "generic",
        "tls",
        "docker-registry",
        "clusterip",
        "nodeport",
        "loadbalancer",
        "externalname",
    ):
        names = names[1:]
    return [(kind, names[0] if names else None)]


def _assignment_state(verb: str, assignments: Sequence[str]) -> dict[str, Any]:
    values: dict[str, str] = {}
    removed: list[str] = []
    for item in assignments:
        if "=" in item:
            key, _, value = item.partition("=")
            values[key] = value
        elif item.endswith("-"):
            removed.append(item[:-1])
        else:
            values[item] = ""
    if verb == "set image":
        state: dict[str, Any] = {"images": values}
        if len(values) == 1:
            (container, image), *_ = values.items()
            state.update(container=container, image=image)
        return state
    if verb == "set env":
        return {"env": values, "unset": removed}
    if verb == "taint":
        return {"taints": [f"{k}={v}" if v else k for k, v in values.items()], "untaint": removed}
    key = {"label": "labels", "annotate": "annotations", "set selector": "selector"}.get(verb, "values")
    return {key: values, "remove": removed}


def _replicas_state(opts: Mapping[str, str | None]) -> dict[str, Any]:
    if "replicas" not in opts:
        return {}
    replicas = _non_negative_int(opts["replicas"], "--replicas")
    state: dict[str, Any] = {"replicas": replicas}
    if opts.get("current-replicas") not in (None, ""):
        state["current_replicas"] = _non_negative_int(opts["current-replicas"], "--current-replicas")
    return state


def _non_negative_int(value: str | None, flag: str) -> int:
    text = (value or "").strip()
    if not re.fullmatch(r"\d{1,6}", text):
        raise UnsafeCommand(phrase("%(flag)s must be a whole number, got %(value)s", flag=flag, value=repr(value)))
    return int(text)


def _int_or_text(value: str | None) -> int | str:
    text = (value or "").strip()
    return int(text) if re.fullmatch(r"\d{1,9}", text) else text


def _last_values(options: Iterable[tuple[str, str | None]]) -> dict[str, str | None]:
    values: dict[str, str | None] = {}
    for name, value in options:
        values[name] = value  # the last one wins, as in kubectl
    return values


def _truthy(opts: Mapping[str, str | None], name: str) -> bool:
    if name not in opts:
        return False
    value = opts[name]
    # Anything but an explicit false counts: kubectl rejects junk values, and over-counting is safe.
    return value is None or value.strip().casefold() not in _FALSE


def _flag_text(name: str, value: str | None) -> str:
    return f"--{name}" if value is None else f"--{name}={value}"


_ROLLBACK_HINTS: Mapping[str, str] = MappingProxyType(
    {
        "uncordon": N_("cordon the node again by hand if needed"),
        "rollout pause": N_("kubectl rollout resume undoes it"),
        "rollout resume": N_("kubectl rollout pause undoes it"),
        "delete": N_("deleted objects must be recreated from their manifests"),
        "exec": N_("what the command did inside the container is not tracked"),
        "debug": N_("delete the debug pod or ephemeral container by hand"),
    }
)


def _rollback(
    verb: str,
    info: _Verb,
    namespace: str | None,
    resources: Sequence[tuple[str, str | None]],
    selector: str | None,
) -> Rollback:
    if not info.mutating:
        return Rollback("none", None, phrase("read-only: nothing to roll back"))
    ns_args = ["-n", namespace] if namespace else []
    named = bool(resources) and all(name for _, name in resources)
    targets = [f"{kind}/{name}" for kind, name in resources]
    workloads = named and all(kind in _WORKLOAD_KINDS for kind, _ in resources)
    if verb in ("rollout restart", "set image", "set env", "set resources") or (verb == "patch" and workloads):
        if workloads and not selector:
            argv = ("kubectl", *ns_args, "rollout", "undo", *targets)
            return Rollback("rollout_undo", shlex.join(argv), phrase("roll back to the previous revision"), argv)
        return Rollback(
            "manual", None, phrase("no single named workload: roll each one back by hand (rollout undo)")
        )
    if verb == "rollout undo":
        history = shlex.join(["kubectl", *ns_args, "rollout", "history", *targets]) if named else "rollout history"
        description = phrase("undo of an undo: pick the revision by hand (%(history)s)", history=history)
        return Rollback("manual", None, description)
    if verb == "scale":
        if named and len(resources) == 1 and not selector:
            argv = ("kubectl", *ns_args, "scale", targets[0], "--replicas={replicas}")
            command = shlex.join(argv[:-1]) + " --replicas={replicas}"
            description = phrase("scale back to the replica count read before the change")
            return Rollback("scale_back", command, description, argv)
        return Rollback("manual", None, phrase("several or unnamed targets: scale each back by hand"))
    if verb in ("cordon", "drain"):
        if named and not selector:
            argv = ("kubectl", "uncordon", *(name for _, name in resources if name))
            description = (
                phrase("make the node schedulable again; evicted pods are not moved back")
                if verb == "drain"
                else phrase("make the node schedulable again")
            )
            return Rollback("uncordon", shlex.join(argv), description, argv)
        return Rollback("manual", None, phrase("nodes chosen by selector: uncordon them by hand"))
    if verb == "delete" and resources and all(kind == "pod" for kind, _ in resources):
        return Rollback(
            "none", None, phrase("the pod's controller recreates it (a bare pod without one is gone for good)")
        )
    hint = _ROLLBACK_HINTS.get(verb)
    return Rollback("manual", None, hint or phrase("no automatic rollback for %(verb)s: plan it by hand", verb=verb))


def _dry_run_argv(
    argv: tuple[str, ...],
    info: _Verb,
    namespace: str | None,
    all_namespaces: bool,
    resources: Sequence[tuple[str, str | None]],
    label_selector: str | None,
    field_selector: str | None,
    dashes: bool,
) -> tuple[str, ...] | None:
    if not info.mutating:
        return None
    if info.dry_run:
        words = [w for w in argv if not w.startswith("--dry-run")]
        if dashes:
            cut = words.index("--")
            return (*words[:cut], "--dry-run=server", *words[cut:])
        return (*words, "--dry-run=server")
    if not resources:
        return None
    get = ["kubectl", *(["-n", namespace] if namespace else []), *(["-A"] if all_namespaces else []), "get"]
    if all(name for _, name in resources):
        get.extend(f"{kind}/{name}" for kind, name in resources)
    else:
        get.append(",".join(dict.fromkeys(kind for kind, _ in resources)))
    if label_selector:
        get.append(f"--selector={label_selector}")
    if field_selector:
        get.append(f"--field-selector={field_selector}")
    return tuple(get)


def _constraints(
    verb: str,
    info: _Verb,
    namespace: str | None,
    all_namespaces: bool,
    resources: Sequence[tuple[str, str | None]],
    selector_parts: Mapping[str, str],
    filenames: Sequence[str],
    rollback: Rollback,
    dry_run_argv: tuple[str, ...] | None,
) -> tuple[str, ...]:
    out: list[str] = []
    if not info.mutating:
        out.append(phrase("read-only"))
    kinds = {kind for kind, _ in resources}
    if info.node or kinds == {"node"}:
        out.append(phrase("node-level: the namespace does not apply"))
    elif all_namespaces:
        out.append(phrase("all namespaces"))
    elif kinds and kinds <= _CLUSTER_SCOPED | {"namespace"}:
        out.append(phrase("cluster-scoped"))
    elif namespace:
        out.append(phrase("namespace %(namespace)s only", namespace=namespace))
    elif info.mutating:
        out.append(phrase("namespace from the kubeconfig context (none given)"))
    named = [f"{k}/{n}" for k, n in resources if n]
    if len(resources) == 1 and named:
        out.append(phrase("one resource: %(resource)s", resource=named[0]))
    elif len(resources) > 1 and len(named) == len(resources):
        out.append(phrase("%(count)s resources: %(resources)s", count=len(resources), resources=", ".join(named)))
    elif resources and not selector_parts:
        every = ", ".join(sorted(kinds))
        out.append(
            phrase("every %(kinds)s", kinds=every)
            if all_namespaces
            else phrase("every %(kinds)s in the namespace", kinds=every)
        )
    if selector_parts:
        out.append(phrase(_SELECTOR_REASONS[tuple(selector_parts)][0], **selector_parts))
    if filenames:
        out.append(phrase("resources from %(files)s (not visible here)", files=", ".join(filenames)))
    if info.mutating:
        if info.dry_run:
            out.append(phrase("rehearsed first with --dry-run=server"))
        elif dry_run_argv is not None:
            out.append(
                phrase(
                    "kubectl has no dry run for %(verb)s: rehearsed with %(command)s",
                    verb=verb,
                    command=shlex.join(dry_run_argv),
                )
            )
        else:
            out.append(phrase("kubectl has no dry run for %(verb)s", verb=verb))
        out.append(phrase("rollback: %(rollback)s", rollback=rollback.command or rollback.description))
    return tuple(out)


def _parse_other_tool(raw: str, argv: tuple[str, ...]) -> RemediationSpec:
    tool = argv[0]
    words = [word for word in argv[1:] if not word.startswith("-")]
    verb = words[0] if words else ""
    name = words[1] if len(words) > 1 else None
    rollback = Rollback(
        "manual", None, phrase("%(tool)s is not kubectl: no automatic rollback, plan it by hand", tool=tool)
    )
    return RemediationSpec(
        raw=raw,
        argv=argv,
        tool=tool,
        verb=verb,
        kind=None,
        name=name,
        namespace=None,
        all_namespaces=False,
        selector=None,
        flags=tuple(word for word in argv[1:] if word.startswith("-")),
        target_state={},
        dry_run_required=False,
        constraints=(
            phrase("%(tool)s is not kubectl: scored as a generic tool", tool=tool),
            phrase("no dry run for %(tool)s", tool=tool),
            phrase("no automatic rollback"),
        ),
        rollback=rollback,
        resources=(),
        mutating=True,
        dry_run_argv=None,
    )


# --- hard rules --------------------------------------------------------------------------------------


def find_hard_rule(text: str) -> str | None:
    """The hard rule that free text breaks, if any: rm -r, DROP TABLE/DATABASE/SCHEMA, TRUNCATE, mkfs,
    dd if=, shutdown/reboot. Case-insensitive, inside quotes too, after NFKC (fullwidth letters count)."""
    if not isinstance(text, str) or not text:
        return None
    folded = unicodedata.normalize("NFKC", text).casefold()
    variants = {folded, folded.replace('"', "").replace("'", "")}
    variants |= {_SQL_COMMENT.sub(" ", variant) for variant in variants}
    for variant in variants:
        for match in _RM.finditer(variant):
            for flag in match.group(1).split():
                if flag.startswith("--") and flag[2:] in ("recursive", "dir"):
                    return _RM_RULE
                if not flag.startswith("--") and "r" in flag:
                    return _RM_RULE
    for pattern, rule in _TEXT_RULES:
        if any(pattern.search(variant) for variant in variants):
            return rule
    return None


def _nested_hard_rule(text: str) -> str | None:
    """A kubectl delete of a hard-rule kind, or delete --all, written inside another command."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    match = _NESTED_DELETE.search(folded)
    if match:
        rule = HARD_DELETE_KINDS[_KIND_ALIASES.get(match.group(1), match.group(1))]
        return phrase("%(rule)s (nested command)", rule=rule)
    if _NESTED_DELETE_ALL.search(folded):
        return phrase("%(rule)s (nested command)", rule="delete --all")
    return find_hard_rule(text)


def _spec_hard_rules(spec: RemediationSpec) -> list[str]:
    rules: list[str] = []
    for text in (spec.raw, " ".join(spec.argv)):
        rule = find_hard_rule(text)
        if rule and rule not in rules:
            rules.append(rule)
    nested: list[str] = [word for word in spec.argv[1:] if any(c.isspace() for c in word)]
    if spec.tool != "kubectl":
        nested.append(" ".join(spec.argv[1:]))
    command = spec.target_state.get("command")
    if isinstance(command, list):
        nested.append(" ".join(str(word) for word in command))
    for text in nested:
        rule = _nested_hard_rule(text)
        if rule and rule not in rules:
            rules.append(rule)
    if spec.tool == "kubectl" and spec.verb == "delete":
        for resource in spec.resources:
            kind = resource.partition("/")[0]
            if kind in HARD_DELETE_KINDS and HARD_DELETE_KINDS[kind] not in rules:
                rules.append(HARD_DELETE_KINDS[kind])
        if _truthy(_flag_map(spec.flags), "all"):
            rules.append("delete --all")
    return rules


# --- scoring -----------------------------------------------------------------------------------------


def blast_radius(spec: RemediationSpec, policy: NamespacePolicy, *, current_replicas: int | None = None) -> Score:
    """Score 0–100 with its reasons: base × namespace multiplier (rounded up, the safe side) + flag
    penalties, capped at 99; hard rules score 100. ``current_replicas`` (read before, when the caller
    has it) tells scale up from scale down."""
    rules = _spec_hard_rules(spec)
    if rules:
        return Score(
            BLOCKED_SCORE,
            tuple(phrase("hard rule: %(rule)s", rule=rule) for rule in rules) + (f"= {BLOCKED_SCORE}",),
            rules[0],
        )
    if spec.tool != "kubectl":
        base = BASE_SCORES[_TOOL_BASES.get(spec.tool, "other tool")]
        return _total(phrase("%(tool)s (not kubectl) %(points)s", tool=spec.tool, points=base), base, 1.0, "", [])
    info = _VERBS[spec.verb]
    opts = _flag_map(spec.flags)
    label, base = _base(spec, opts, current_replicas)
    factor, factor_label = _multiplier(spec, info, policy)
    penalties = _penalties(spec, info, opts) if info.mutating else []
    reason = phrase(_BASE_REASONS[label], points=base) if label in _BASE_REASONS else f"{label} {base}"
    return _total(reason, base, factor, factor_label, penalties)


# The reasons' labels that are words rather than a kubectl verb (or a namespace): each reason a phrase.
_BASE_REASONS: Mapping[str, str] = MappingProxyType(
    {
        "get secret values": N_("get secret values %(points)s"),
        "scale up": N_("scale up %(points)s"),
        "scale down": N_("scale down %(points)s"),
        "scale (direction unknown)": N_("scale (direction unknown) %(points)s"),
        "scale to 0": N_("scale to 0 %(points)s"),
        "delete (other kind)": N_("delete (other kind) %(points)s"),
        "delete -f (manifest files)": N_("delete -f (manifest files) %(points)s"),
    }
)
_FACTOR_REASONS: Mapping[str, str] = MappingProxyType(
    {
        "all namespaces": N_("× all namespaces %(factor)s"),
        "cluster-wide": N_("× cluster-wide %(factor)s"),
        "dev/staging": N_("× dev/staging %(factor)s"),
    }
)


def _base(spec: RemediationSpec, opts: Mapping[str, str | None], current: int | None) -> tuple[str, int]:
    kinds = [resource.partition("/")[0] for resource in spec.resources]
    if spec.verb == "delete":
        if not kinds:
            return "delete -f (manifest files)", BASE_SCORES["delete -f (manifest files)"]
        keyed = [(f"delete {k}" if f"delete {k}" in BASE_SCORES else "delete (other kind)") for k in kinds]
        worst = max(keyed, key=lambda key: BASE_SCORES[key])
        return worst, BASE_SCORES[worst]
    if spec.verb == "scale":
        replicas = spec.target_state.get("replicas")
        if current is None:
            hinted = spec.target_state.get("current_replicas")
            current = hinted if isinstance(hinted, int) else None
        if replicas == 0:
            key = "scale to 0"
        elif current is None:
            key = "scale (direction unknown)"
        elif isinstance(replicas, int) and replicas < current:
            key = "scale down"
        else:
            key = "scale up"
        return key, BASE_SCORES[key]
    if spec.verb == "get" and "secret" in kinds:
        output = (opts.get("output") or "").casefold()
        if output.startswith(_SECRET_OUTPUTS):
            return "get secret values", BASE_SCORES["get secret values"]
    return spec.verb, BASE_SCORES[spec.verb]


def _multiplier(spec: RemediationSpec, info: _Verb, policy: NamespacePolicy) -> tuple[float, str]:
    kinds = {resource.partition("/")[0] for resource in spec.resources}
    if info.node or kinds == {"node"}:
        return 1.0, ""  # nodes are not in a namespace: node verbs have fixed bases
    candidates = [policy.multiplier(spec.namespace, all_namespaces=spec.all_namespaces)]
    if kinds & _CLUSTER_SCOPED:
        candidates.append((WORST_MULTIPLIER, "cluster-wide"))
    if "namespace" in kinds:
        candidates.extend(
            policy.multiplier(resource.partition("/")[2] or None)
            for resource in spec.resources
            if resource.partition("/")[0] == "namespace"
        )
    return max(candidates, key=lambda candidate: candidate[0])


def _penalties(spec: RemediationSpec, info: _Verb, opts: Mapping[str, str | None]) -> list[tuple[str, int]]:
    """(reason, points) per penalty: "+ --force 15", "+ 2 resources 10"."""
    out: list[tuple[str, int]] = []

    def add(key: str, label: str | None = None) -> None:
        out.append((f"+ {label or key} {PENALTIES[key]}", PENALTIES[key]))  # a flag: data

    def add_phrase(key: str, reason: str) -> None:
        out.append((reason, PENALTIES[key]))

    if _truthy(opts, "force"):
        add("--force")
    grace = (opts.get("grace-period") or "").strip()
    if re.fullmatch(r"\+?\d{1,9}", grace) and int(grace) <= 1:
        add("--grace-period=0", f"--grace-period={int(grace)}")
    if _truthy(opts, "now"):
        add("--now")
    if spec.all_namespaces:
        add("--all-namespaces")
    named = bool(spec.resources) and all("/" in resource for resource in spec.resources)
    if _truthy(opts, "all"):
        add("--all")
    elif (
        spec.resources
        and not named
        and not spec.selector
        and spec.verb != "delete"
        and not info.node
        and info.shape not in ("create", "run")
    ):
        key = "no name (every resource of the kind)"
        add_phrase(key, phrase("+ no name (every %(kind)s) %(points)s", kind=spec.kind, points=PENALTIES[key]))
    if spec.selector:
        key = "selector on delete" if spec.verb == "delete" or info.node else "selector"
        parts = _selector_parts(opts, spec.verb)
        if _selector_text(parts) != spec.selector:  # a spec built elsewhere: its selector as it is
            parts = {"labels": spec.selector}
        add_phrase(key, phrase(_SELECTOR_REASONS[tuple(parts)][1], points=PENALTIES[key], **parts))
    if (opts.get("cascade") or "").strip().casefold() in ("orphan", "false"):
        add("--cascade=orphan")
    if len(spec.resources) > 1:
        key = "several resources"
        add_phrase(key, phrase("+ %(count)s resources %(points)s", count=len(spec.resources), points=PENALTIES[key]))
    manifests = spec.target_state.get("manifests") or []
    if any(str(m).casefold().startswith(("http://", "https://")) for m in manifests):
        key = "manifest from a URL"
        add_phrase(key, phrase("+ manifest from a URL %(points)s", points=PENALTIES[key]))
    if _truthy(opts, "prune"):
        add("--prune")
    if _truthy(opts, "disable-eviction"):
        add("--disable-eviction")
    if _truthy(opts, "delete-emptydir-data") or _truthy(opts, "delete-local-data"):
        add("--delete-emptydir-data")
    return out


def _total(reason: str, base: int, factor: float, factor_label: str, penalties: list[tuple[str, int]]) -> Score:
    """``reason`` is the base's ("rollout restart 8"); ``penalties`` are (reason, points)."""
    reasons = [reason]
    # Rounded up: 5 × 0.5 = 2.5 counts as 3. The epsilon keeps 8 × 1.5 = 12.000…01 at 12.
    value = math.ceil(base * factor - 1e-9)
    if factor != 1.0:
        if factor_label in _FACTOR_REASONS:
            reasons.append(phrase(_FACTOR_REASONS[factor_label], factor=f"{factor:g}"))
        else:
            reasons.append(f"× {factor_label} {factor:g}")  # "prod" or the namespace itself: data
    for penalty_reason, points in penalties:
        reasons.append(penalty_reason)
        value += points
    value = max(0, value)
    if value > MAX_APPROVABLE:
        reasons.append(
            phrase(
                "= %(score)s → %(capped)s (only hard rules score %(blocked)s)",
                score=value,
                capped=MAX_APPROVABLE,
                blocked=BLOCKED_SCORE,
            )
        )
        value = MAX_APPROVABLE
    else:
        reasons.append(f"= {value}")
    return Score(value, tuple(reasons), None)


def _flag_map(flags: Iterable[str]) -> dict[str, str | None]:
    values: dict[str, str | None] = {}
    for flag in flags:
        text = flag.removeprefix("--")
        name, eq, value = text.partition("=")
        values[name] = value if eq else None
    return values


# --- tiers -------------------------------------------------------------------------------------------


def tier_for(score: int, *, auto_enabled: bool, trusted: bool) -> Tier:
    """≤ 10 auto (only when enabled and trusted, else one approver), 11–50 one approver, 51–99 two
    distinct approvers, 100 blocked."""
    if score >= BLOCKED_SCORE:
        return Tier.BLOCKED
    if score > ONE_APPROVER_MAX:
        return Tier.TWO
    if score > AUTO_MAX:
        return Tier.ONE
    return Tier.AUTO if auto_enabled and trusted else Tier.ONE


def is_trusted(
    *,
    source: str,
    confidence: float | None,
    min_confidence: float,
    playbook_runs: int = 0,
    playbook_successes: int = 0,
) -> bool:
    """An AI proposal with confidence ≥ min_confidence, or a playbook with ≥ 80% success over ≥ 3 runs.
    Rules and humans are never trusted to run unattended."""
    kind = (source or "").strip().casefold()
    if kind == "ai":
        if confidence is None or not math.isfinite(confidence) or not math.isfinite(min_confidence):
            return False
        return 0.0 <= confidence <= 1.0 and confidence >= min_confidence
    if kind == "playbook":
        if playbook_runs < PLAYBOOK_MIN_RUNS or not 0 <= playbook_successes <= playbook_runs:
            return False
        return playbook_successes * 100 >= playbook_runs * PLAYBOOK_MIN_SUCCESS_PERCENT
    return False


def assess(
    command: str,
    *,
    policy: NamespacePolicy,
    allowed_tools: frozenset[str],
    auto_enabled: bool,
    trusted: bool,
    current_replicas: int | None = None,
) -> Assessment:
    """Parse, score and tier. Never raises: unsafe → 100 blocked with the reason; hard rule → 100
    blocked; an unexpected error → one approver at least (never auto), with the error recorded."""
    text = command if isinstance(command, str) else repr(command)
    text_rule: str | None = None
    try:
        text_rule = find_hard_rule(text)
    except Exception:  # defence in depth must not break the assessment
        log.exception("safety_text_rule_failed")
    spec: RemediationSpec | None = None
    try:
        try:
            spec = parse_command(command, allowed_tools=allowed_tools)
        except UnsafeCommand as exc:
            hard = (phrase("hard rule: %(rule)s", rule=text_rule),) if text_rule else ()
            reasons = hard + (phrase("blocked: %(reason)s", reason=exc.reason),)
            score = Score(BLOCKED_SCORE, reasons + (f"= {BLOCKED_SCORE}",), text_rule)
            reason = (
                phrase("hard rule: %(rule)s; %(reason)s", rule=text_rule, reason=exc.reason)
                if text_rule
                else exc.reason
            )
            return _assessment(text, None, score, Tier.BLOCKED, reason, None)
        score = blast_radius(spec, policy, current_replicas=current_replicas)
        if text_rule and score.value < BLOCKED_SCORE:  # blast_radius checks the raw text too; belt and braces
            rule = phrase("hard rule: %(rule)s", rule=text_rule)
            score = Score(BLOCKED_SCORE, (rule, f"= {BLOCKED_SCORE}"), text_rule)
        tier = tier_for(score.value, auto_enabled=auto_enabled, trusted=trusted)
        blocked = (
            phrase("hard rule: %(rule)s", rule=score.hard_rule) if tier is Tier.BLOCKED and score.hard_rule else None
        )
        if tier is Tier.BLOCKED and blocked is None:
            blocked = score.summary
        return _assessment(text, spec, score, tier, blocked, None)
    except Exception as exc:  # fail safe: a human decides
        error = f"{type(exc).__name__}: {exc}"
        log.exception("safety_assessment_failed", command=text[:200], error=error)
        if text_rule:
            rule = phrase("hard rule: %(rule)s", rule=text_rule)
            score = Score(BLOCKED_SCORE, (rule, f"= {BLOCKED_SCORE}"), text_rule)
            return _assessment(text, spec, score, Tier.BLOCKED, rule, error)
        failed = phrase("scoring failed (%(error)s): a human decides", error=error)
        score = Score(ERROR_SCORE, (failed, f"= {ERROR_SCORE}"), None)
        return _assessment(text, spec, score, Tier.ONE, None, error)


def _assessment(
    command: str, spec: RemediationSpec | None, score: Score, tier: Tier, blocked: str | None, error: str | None
) -> Assessment:
    return Assessment(
        command=command,
        spec=spec,
        score=score,
        tier=tier,
        required_approvals=REQUIRED_APPROVALS[tier],
        blocked_reason=blocked if tier is Tier.BLOCKED else None,
        error=error,
    )


# --- helpers -----------------------------------------------------------------------------------------


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatchcase(name, pattern.lower()) for pattern in patterns)


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
