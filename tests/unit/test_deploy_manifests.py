"""The deployment samples (Dockerfile, deploy/docker-compose.yml, deploy/nginx.conf, deploy/kubernetes/) and
README's "Deployment: PostgreSQL and replicas" agree with the code: every ALERTPILOT_* variable they name is
a setting, their configuration is accepted by Settings, every probe and ingress path is a route the app
serves, migrations run before the replicas, and both samples run 2+ replicas with Telegram in webhook mode.
Nothing here builds an image or starts a container."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.app import build_app
from bot.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBE = DEPLOY / "kubernetes"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
SECTION = "## Deployment: PostgreSQL and replicas"
VARIABLE = re.compile(r"\bALERTPILOT_[A-Z0-9_]*[A-Z0-9]\b")
PROBES = ("/healthz", "/readyz")
MIGRATE = ["alertpilot", "db", "upgrade"]
REQUESTS_SECONDS = 10  # bot/app.py serve(): the HTTP requests in progress get this long after SIGTERM, then the drain


def yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yml", ".yaml"))


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def kube_objects() -> list[dict[str, Any]]:
    """The manifests one applies (deploy/kubernetes/*.yaml; try-postgres/ is separate, for trying it out)."""
    return [doc for path in sorted(KUBE.glob("*.yaml")) for doc in documents(path)]


def kube(kind: str) -> dict[str, Any]:
    found = [doc for doc in kube_objects() if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind} in deploy/kubernetes/, found {len(found)}"
    return found[0]


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def replicas(services: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The compose services that serve alertpilot (its image, the default command)."""
    return {name: svc for name, svc in services.items()
            if str(svc.get("image", "")).startswith("alertpilot") and "command" not in svc}


def readme_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.find(f"\n{SECTION}\n")
    assert start >= 0, f"README.md has no {SECTION!r} section"
    end = text.find("\n## ", start + len(SECTION) + 2)
    return text[start:] if end < 0 else text[start:end]


def setting_names() -> set[str]:
    return {f"ALERTPILOT_{name.upper()}" for name in Settings.model_fields}


def interpolated(value: str) -> str:
    """Compose's ``${NAME:-default}`` with the defaults (what `docker compose up` uses when NAME is unset)."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]*)\}", r"\1", value)


def env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, equals, value = line.partition("=")
            assert equals, f"{path.name}: not KEY=value: {line!r}"
            values[key.strip()] = value.strip()
    return values


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings(_env_file=None)  # type: ignore[call-arg]


def compose_environment(service: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for name in service.get("env_file", []):
        env.update(env_file(DEPLOY / interpolated(name if isinstance(name, str) else name["path"])))
    environment = service.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    env.update({key: interpolated(str(value)) for key, value in environment.items()})
    return env


def kube_environment() -> dict[str, str]:
    return {**kube("ConfigMap")["data"], **kube("Secret")["stringData"]}


def served_paths(settings: Settings) -> set[str]:
    app = build_app(settings, scheduler=False)
    return {route.resource.canonical for route in app.router.routes() if route.resource is not None}


def pod_spec() -> dict[str, Any]:
    return kube("Deployment")["spec"]["template"]["spec"]


def server_container() -> dict[str, Any]:
    (container,) = pod_spec()["containers"]
    return container


# --- every file parses; every variable is a setting ----------------------------------------------------


def test_deploy_has_yaml() -> None:
    names = {p.relative_to(DEPLOY).as_posix() for p in yaml_files()}
    assert "docker-compose.yml" in names
    assert {"kubernetes/deployment.yaml", "kubernetes/migrate-job.yaml", "kubernetes/pdb.yaml"} <= names


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_yaml_parses(path: Path) -> None:
    docs = documents(path)
    assert docs, f"{path.name} is empty"
    if path.parent.name in ("kubernetes", "try-postgres"):
        for doc in docs:
            assert {"apiVersion", "kind", "metadata"} <= doc.keys(), f"{path.name}: not a Kubernetes object"
            assert "namespace" not in doc["metadata"], f"{path.name}: the samples are namespace-less"


def variable_sources() -> list[tuple[str, str]]:
    files = [p for p in sorted(DEPLOY.rglob("*")) if p.is_file()] + [DOCKERFILE, ROOT / ".dockerignore"]
    sources = [(p.relative_to(ROOT).as_posix(), p.read_text(encoding="utf-8")) for p in files]
    return [*sources, ("README.md: " + SECTION.removeprefix("## "), readme_section())]


@pytest.mark.parametrize(("where", "text"), variable_sources(), ids=[w for w, _ in variable_sources()])
def test_every_variable_is_a_setting(where: str, text: str) -> None:
    unknown = sorted(set(VARIABLE.findall(text)) - setting_names())
    assert not unknown, f"{where} names variables bot/settings.py does not define: {unknown}"


# --- the samples' configuration is valid, PostgreSQL, webhook mode -------------------------------------


def test_compose_configuration_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    services = replicas(compose()["services"])
    assert len(services) >= 2
    for service in services.values():
        settings = settings_from(compose_environment(service), monkeypatch)
        assert settings.database_url.startswith("postgresql+asyncpg://")
        assert settings.telegram_mode == "webhook"
        assert settings.telegram_webhook_url and settings.telegram_webhook_url.endswith("/telegram/webhook")
        assert settings.http_host == "0.0.0.0"
        assert settings.ingest_token is not None, "replicas must share an explicit ALERTPILOT_INGEST_TOKEN"


def test_kubernetes_configuration_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from(kube_environment(), monkeypatch)
    assert settings.database_url.startswith("postgresql+asyncpg://")
    assert settings.telegram_mode == "webhook"
    assert settings.telegram_webhook_url and settings.telegram_webhook_url.endswith("/telegram/webhook")
    assert settings.http_host == "0.0.0.0"
    assert settings.ingest_token is not None, "replicas must share an explicit ALERTPILOT_INGEST_TOKEN"
    assert not settings.migrate_at_start, "the Job migrates; replicas wait for it"


def test_kubernetes_secret_values_are_placeholders() -> None:
    for key, value in kube("Secret")["stringData"].items():
        assert "REPLACE-ME" in value, f"secret.yaml: {key} does not look like a placeholder"


# --- probes and public paths are routes the app serves -------------------------------------------------


def probe_paths() -> set[str]:
    container = server_container()
    paths = {container[p]["httpGet"]["path"] for p in ("startupProbe", "readinessProbe", "livenessProbe")}
    for service in compose()["services"].values():
        paths.update(re.findall(r"/[a-z]+z\b", " ".join(map(str, service.get("healthcheck", {}).get("test", [])))))
    dockerfile = DOCKERFILE.read_text(encoding="utf-8")
    healthcheck = re.search(r"^HEALTHCHECK .*?(?<!\\)$", dockerfile, re.MULTILINE | re.DOTALL)
    assert healthcheck is not None, "the Dockerfile has no HEALTHCHECK"
    paths.update(re.findall(r"/[a-z]+z\b", healthcheck.group(0)))
    return paths


def test_probe_paths_are_healthz_and_readyz() -> None:
    assert probe_paths() == set(PROBES)


@pytest.mark.parametrize("path", PROBES)
def test_probe_path_is_served(path: str) -> None:
    # /readyz comes with the scale-out work (readiness: 503 while starting or draining after SIGTERM).
    assert path in served_paths(Settings(_env_file=None)), f"the app serves no {path}"  # type: ignore[call-arg]


def ingress_paths() -> list[tuple[str, str]]:
    return [(p["path"], p["pathType"]) for rule in kube("Ingress")["spec"]["rules"] for p in rule["http"]["paths"]]


@pytest.mark.parametrize(("path", "path_type"), ingress_paths(), ids=[p for p, _ in ingress_paths()])
def test_ingress_path_is_served(path: str, path_type: str, monkeypatch: pytest.MonkeyPatch) -> None:
    served = served_paths(settings_from(kube_environment(), monkeypatch))
    if path_type == "Exact":
        assert path in served, f"the app serves no {path}"
    else:
        under = [p for p in served if p == path or p.startswith(path.rstrip("/") + "/")]
        assert under, f"the app serves nothing under {path}"


def test_ingress_routes_to_the_service() -> None:
    service = kube("Service")
    port_names = {port["name"] for port in service["spec"]["ports"]}
    for rule in kube("Ingress")["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == service["metadata"]["name"]
            assert backend["port"]["name"] in port_names


# --- Kubernetes: migrate first, 2+ replicas, probes, shutdown, security --------------------------------


def test_migration_job_runs_db_upgrade() -> None:
    job = kube("Job")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container.get("command", []) + container.get("args", []) == MIGRATE
    assert container["image"] == server_container()["image"]
    assert {e.get("configMapRef", e.get("secretRef"))["name"] for e in container["envFrom"]} == {"alertpilot"}
    assert container["envFrom"] == server_container()["envFrom"], "the Job must see the replicas' configuration"


def test_replicas_wait_for_the_migration() -> None:
    (init,) = pod_spec()["initContainers"]
    assert "alertpilot db status" in " ".join(init["command"])
    assert init["image"] == server_container()["image"]


def test_deployment_runs_replicas_with_probes() -> None:
    deployment = kube("Deployment")
    assert deployment["spec"]["replicas"] >= 2
    container = server_container()
    assert "command" not in container and "args" not in container, "the image's CMD (alertpilot) serves"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": 8080}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] == "http"
    assert container["resources"]["requests"] and container["resources"]["limits"]


def seconds(duration: str) -> float:
    """A compose duration: 30s, 1m30s, 1m."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a duration: {duration!r}"
    return sum(float(n) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[u] for n, u in parts)


def test_kubernetes_grace_period_covers_the_shutdown(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kubelet waits for preStop, then SIGTERM: requests in progress, then the drain; it must not kill it first."""
    settings = settings_from(kube_environment(), monkeypatch)
    pre_stop = server_container()["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    needed = float(pre_stop[1]) + REQUESTS_SECONDS + settings.shutdown_grace_seconds
    assert pod_spec()["terminationGracePeriodSeconds"] > needed


def test_compose_grace_period_covers_the_shutdown(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, service in replicas(compose()["services"]).items():
        settings = settings_from(compose_environment(service), monkeypatch)
        assert service.get("stop_signal", "SIGTERM") == "SIGTERM", name
        assert seconds(service["stop_grace_period"]) > REQUESTS_SECONDS + settings.shutdown_grace_seconds, name


def test_deployment_security() -> None:
    spec = pod_spec()
    assert spec["securityContext"]["runAsNonRoot"] is True
    volumes = {v["name"]: v for v in spec["volumes"]}
    for container in spec["containers"] + spec["initContainers"]:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert "emptyDir" in volumes[mounts["/tmp"]]


def test_service_and_pdb_select_the_pods() -> None:
    labels = kube("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert kube("Deployment")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert kube("Service")["spec"]["selector"].items() <= labels.items()
    pdb = kube("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


# --- docker compose: postgres -> migrate -> replicas -> nginx -------------------------------------------


def test_compose_order_and_replicas() -> None:
    services = compose()["services"]
    assert services["postgres"]["image"].startswith("postgres:16")
    assert "healthcheck" in services["postgres"] and services["postgres"]["volumes"]
    migrate = services["migrate"]
    assert migrate["command"] == MIGRATE
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    serving = replicas(services)
    assert len(serving) >= 2
    for name, service in serving.items():
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name
        assert "/readyz" in " ".join(service["healthcheck"]["test"]), name
        assert "ports" not in service, f"{name}: only the load balancer publishes a port"
    lb = [s for s in services.values() if str(s.get("image", "")).startswith("nginx")]
    assert len(lb) == 1 and len(lb[0]["ports"]) == 1
    assert set(lb[0]["depends_on"]) == set(serving)


def test_nginx_balances_over_every_replica() -> None:
    conf = (DEPLOY / "nginx.conf").read_text(encoding="utf-8")
    upstream = re.search(r"upstream\s+(\w+)\s*\{(.*?)\}", conf, re.DOTALL)
    assert upstream is not None
    servers = set(re.findall(r"^\s*server\s+([\w.-]+):8080\b", upstream.group(2), re.MULTILINE))
    assert servers == set(replicas(compose()["services"]))
    assert re.search(rf"proxy_pass\s+http://{upstream.group(1)};", conf)
    assert not re.search(r"\b(ip_hash|hash|least_conn|random)\b", upstream.group(2)), "round robin: any replica serves"


def test_compose_config_validates() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker is not installed")
    if subprocess.run([docker, "compose", "version"], check=False, capture_output=True, timeout=30).returncode != 0:
        pytest.skip("docker compose is not available")
    # `config` only reads and validates the file: no image is pulled or built, nothing starts.
    done = subprocess.run([docker, "compose", "-f", str(COMPOSE), "config", "-q"], cwd=DEPLOY, check=False,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


# --- the image -----------------------------------------------------------------------------------------


def test_dockerfile() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.MULTILINE)
    user = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"^EXPOSE 8080$", text, re.MULTILINE)
    assert re.search(r"ALERTPILOT_HTTP_HOST=0\.0\.0\.0", text)
    assert re.search(r'^CMD \["alertpilot"\]$', text, re.MULTILINE)
    assert re.search(r"^RUN pip install \.", text, re.MULTILINE)
    # What pyproject packages (the templates are its package data).
    copied = set(re.findall(r"^COPY (\S+) ", text, re.MULTILINE))
    assert {"bot", "handlers", "services", "storage", "templates"} <= copied
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".venv", "data", ".git"} <= set(ignored)


def test_a_regular_install_carries_every_template_and_migration(tmp_path: Path) -> None:
    """`pip install .` (the image) must bring what bot/render.py and storage/migrate.py read from disk."""
    source = tmp_path / "src"  # a copy, as the image's COPY lines make it: the build leaves nothing in the repo
    for name in ("pyproject.toml", "README.md"):
        source.mkdir(exist_ok=True)
        shutil.copy(ROOT / name, source / name)
    for folder in ("bot", "handlers", "services", "storage", "templates"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                            "-w", str(tmp_path), str(source)], capture_output=True, text=True, timeout=300, check=False)
    assert built.returncode == 0, built.stderr[-2000:]
    [wheel] = tmp_path.glob("alertpilot-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = [p.relative_to(ROOT).as_posix() for folder in ("templates", "storage/migrations")
              for p in (ROOT / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert wanted and [name for name in wanted if name not in names] == []
