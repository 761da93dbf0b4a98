"""deploy/ agrees with the code: metric names, settings, ports and paths, and promtool accepts the rules."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from streams.adapters.metrics import Metrics
from streams.settings import Settings

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
PROMETHEUS_DIR = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "churnwatch.json"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDER = DEPLOY / "grafana" / "provisioning" / "dashboards" / "churnwatch.yml"
K8S = DEPLOY / "k8s"
COMPOSE = REPO / "docker-compose.yml"

# Metrics the dashboard already shows but the worker does not export yet (docs/observability.md, "Planned").
# Once streams/adapters/metrics.py exports one, it can leave this list.
# Metrics a panel or rule may use before the worker exports them (none: the cohort gauges are exported now).
PENDING_METRICS: list[str] = []

# Series Prometheus makes itself for every target.
PROMETHEUS_SERIES = {"up"}

K8S_MANIFESTS = [
    "namespace.yaml", "configmap.yaml", "secret.example.yaml", "statefulset.yaml", "service.yaml",
    "servicemonitor.yaml", "poddisruptionbudget.yaml", "job-topics.yaml",
]

ALERT_NAMES = {
    "ChurnwatchWorkerDown", "ChurnwatchConsumerLagGrowing", "ChurnwatchDeadLetterRate",
    "ChurnwatchNoEventsReceived", "ChurnwatchAlertRateAnomaly", "ChurnwatchRedisSinkFailing",
    "ChurnwatchSlowBatches", "ChurnwatchUsageWaitForced",
}

# How prometheus-client exposes a family of each type (a labelled family has no samples until first used,
# so its sample names cannot all be collected from a fresh registry).
_EXPOSED_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "enum": ("",),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "unknown": ("",),
}


# --- helpers -----------------------------------------------------------------------------------------


def exported_families() -> dict[str, set[str]]:
    """Family name -> the series names a worker's /metrics exposes for it."""
    registry = CollectorRegistry()
    Metrics(registry)
    families: dict[str, set[str]] = {}
    for family in registry.collect():
        names = {sample.name for sample in family.samples}
        names.update(family.name + suffix for suffix in _EXPOSED_SUFFIXES[family.type])
        families[family.name] = names
    return families


def exported_series_names() -> set[str]:
    return set().union(*exported_families().values())


_PROMQL_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
    "inf", "nan",
}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names used in a PromQL expression (good enough for our rules and panels, not a full parser)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # string literals
    s = re.sub(r"\{[^}]*\}", " ", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)  # range and subquery durations
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)  # label lists
    s = re.sub(r"\boffset\s+-?[\w$]+", " ", s)
    names = set()
    for match in re.finditer(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*", s):
        word = match.group(0)
        if s[match.end():].lstrip().startswith("("):
            continue  # a function or aggregation
        if word.lower() in _PROMQL_KEYWORDS:
            continue
        names.add(word)
    return names


def load_yaml_docs(path: Path) -> list[Any]:
    with path.open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def k8s_objects() -> Iterator[dict[str, Any]]:
    for name in K8S_MANIFESTS:
        yield from load_yaml_docs(K8S / name)


def k8s_object(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        o for o in k8s_objects() if o["kind"] == kind and name in (None, o["metadata"]["name"])
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''} in deploy/k8s, found {len(found)}"
    return found[0]


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_panels() -> list[dict[str, Any]]:
    panels = []
    for panel in dashboard()["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # panels inside collapsed rows
    return panels


def dashboard_exprs() -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable of the dashboard."""
    exprs = []
    for panel in dashboard_panels():
        for target in panel.get("targets", []):
            exprs.append((f"panel '{panel['title']}'", target["expr"]))
    for var in dashboard().get("templating", {}).get("list", []):
        query = var.get("query")
        query = query.get("query") if isinstance(query, dict) else query
        if var.get("type") != "query" or not query:
            continue
        match = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", query)
        exprs.append((f"variable '{var['name']}'", match.group(1) if match else query))
    return exprs


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def settings_env_names() -> set[str]:
    return {f"CHURNWATCH_{field.upper()}" for field in Settings.model_fields}


def container_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def k8s_env_by_source() -> dict[str, dict[str, str]]:
    """Every CHURNWATCH_* variable the Kubernetes manifests set, by where it is set."""
    env_configmap = k8s_object("ConfigMap", "churnwatch-env")
    secret = k8s_object("Secret")
    worker = k8s_object("StatefulSet")["spec"]["template"]["spec"]["containers"][0]
    topics = k8s_object("Job")["spec"]["template"]["spec"]["containers"][0]
    sources = {
        "configmap.yaml (churnwatch-env)": dict(env_configmap["data"]),
        "secret.example.yaml": dict(secret["stringData"]),
        "statefulset.yaml": container_env(worker),
        "job-topics.yaml": container_env(topics),
    }
    return {
        where: {k: v for k, v in env.items() if k.startswith("CHURNWATCH_")}
        for where, env in sources.items()
    }


def compose_env_by_service() -> dict[str, dict[str, str]]:
    out = {}
    for name, service in compose()["services"].items():
        env = service.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.split("=", 1) for item in env)
        out[name] = {k: str(v) for k, v in env.items() if k.startswith("CHURNWATCH_")}
    return out


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in settings_env_names():
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


def find_promtool() -> str:
    """promtool's path; fails the calling test (never skips) when it is not installed."""
    path = shutil.which("promtool") or next((p for p in ["/usr/bin/promtool"] if Path(p).exists()), None)
    if path is None:
        pytest.fail(
            "promtool not found: install Debian's `prometheus` package (apt-get install -y prometheus), "
            "which provides /usr/bin/promtool; the deploy tests need it to check the Prometheus rules",
            pytrace=False,
        )
    return path


def run_promtool(*args: str) -> None:
    proc = subprocess.run(
        [find_promtool(), *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, f"promtool {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"


# --- metric names ------------------------------------------------------------------------------------


def test_the_promql_name_reader_finds_metrics_and_ignores_labels_functions_durations_and_keywords() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (job, le) (rate(a_bucket{instance=~"$instance", x="b_total"}'
        "[$__rate_interval]))) > 1e3 * avg_over_time(b:rec:rate5m[7d:1h] offset 1d) and on (job) up == 0"
        " or absent(c_total) unless sum(d) without (e)"
    )
    assert promql_metric_names(expr) == {"a_bucket", "b:rec:rate5m", "up", "c_total", "d"}


def test_the_cohort_and_company_gauges_the_dashboard_uses_are_exported() -> None:
    exported = exported_series_names()
    for name in ("churnwatch_cohort_customer_retention_ratio", "churnwatch_company_mrr_minor_units",
                 "churnwatch_company_paying_customers"):
        assert name in exported


def test_the_dashboard_json_is_valid_and_every_metric_in_a_panel_is_exported_or_pending() -> None:
    known = exported_series_names() | set(PENDING_METRICS) | PROMETHEUS_SERIES
    exprs = dashboard_exprs()
    assert exprs, "the dashboard has no queries"
    unknown = {
        f"{where}: {name}" for where, expr in exprs for name in promql_metric_names(expr) if name not in known
    }
    assert unknown == set()


def test_every_metric_used_in_the_alert_rules_is_exported_or_pending() -> None:
    rules = alert_rules()
    recorded = {rule["record"] for rule in rules if "record" in rule}
    known = exported_series_names() | set(PENDING_METRICS) | PROMETHEUS_SERIES | recorded
    unknown = {
        f"{rule.get('alert') or rule.get('record')}: {name}"
        for rule in rules
        for name in promql_metric_names(rule["expr"])
        if name not in known
    }
    assert unknown == set()


def test_every_exported_metric_family_is_shown_on_the_dashboard() -> None:
    used = {name for _, expr in dashboard_exprs() for name in promql_metric_names(expr)}
    missing = {family for family, series in exported_families().items() if not series & used}
    assert missing == set()


def test_the_dashboard_has_the_panels_the_operators_rely_on() -> None:
    panels = [p for p in dashboard_panels() if p["type"] != "row"]
    titles = {p["title"] for p in panels}
    for title in [
        "Event throughput by topic and outcome", "Consumer lag", "Dead letters by reason",
        "Alerts by trigger and severity", "Event-to-alert latency", "Batch duration", "Table keys",
        "Redis sink pending records", "Redis sink retries and failures", "Account state size",
        "Cohort retention heatmap",
    ]:
        assert title in titles
    latency = next(p for p in panels if p["title"] == "Event-to-alert latency")
    quantiles = {re.search(r"histogram_quantile\(([\d.]+)", t["expr"]).group(1) for t in latency["targets"]}  # type: ignore[union-attr]
    assert quantiles == {"0.5", "0.95", "0.99"}
    heatmap = next(p for p in panels if p["title"] == "Cohort retention heatmap")
    assert "churnwatch_cohort_customer_retention_ratio" in heatmap["targets"][0]["expr"]


def test_every_dashboard_panel_has_a_unique_id_fits_the_grid_and_uses_the_provisioned_datasource() -> None:
    datasource_uid = yaml.safe_load(DATASOURCES.read_text())["datasources"][0]["uid"]
    panels = dashboard_panels()
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == datasource_uid, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"]["uid"] == datasource_uid, panel["title"]


def test_grafana_provisioning_loads_the_dashboard_folder_that_compose_mounts() -> None:
    provider = yaml.safe_load(DASHBOARD_PROVIDER.read_text())["providers"][0]
    assert provider["type"] == "file"
    grafana_mounts = compose()["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in grafana_mounts
    datasource = yaml.safe_load(DATASOURCES.read_text())["datasources"][0]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"


# --- alert rules and promtool ------------------------------------------------------------------------


def test_the_eight_alert_rules_each_have_a_severity_a_summary_and_a_runbook_section() -> None:
    rules = [rule for rule in alert_rules() if "alert" in rule]
    assert {rule["alert"] for rule in rules} == ALERT_NAMES
    operations = (REPO / "docs" / "operations.md").read_text()
    for rule in rules:
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert rule["annotations"]["summary"].strip(), name
        anchor = f"docs/operations.md#{name.lower()}"
        assert anchor in rule["annotations"]["description"], name
        assert rule["annotations"]["runbook_url"] == anchor, name
        section = f"docs/operations.md has no '### {name}' section"
        assert re.search(rf"^### {name}$", operations, re.M), section


def test_promtool_accepts_the_alert_rules() -> None:
    run_promtool("check", "rules", "alerts.yml")


def test_promtool_accepts_the_prometheus_config() -> None:
    run_promtool("check", "config", "prometheus.yml")


def test_the_alert_rule_unit_tests_pass_in_promtool() -> None:
    tested = {
        case["alertname"]
        for test in yaml.safe_load((PROMETHEUS_DIR / "alerts_test.yml").read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    }
    assert {"ChurnwatchWorkerDown", "ChurnwatchDeadLetterRate"} <= tested
    run_promtool("test", "rules", "alerts_test.yml")


def test_prometheus_scrapes_the_compose_worker_every_15s_and_loads_the_alert_rules() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    assert config["global"]["scrape_interval"] == "15s"
    assert config["rule_files"] == ["alerts.yml"]
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "churnwatch")
    assert job["metrics_path"] == "/metrics"
    port = Settings.model_fields["web_port"].default
    assert job["static_configs"][0]["targets"] == [f"worker:{port}"]


# --- settings and ports ------------------------------------------------------------------------------


def test_every_churnwatch_variable_in_the_k8s_manifests_and_compose_file_is_a_setting() -> None:
    known = settings_env_names()
    compose_env = {f"docker-compose.yml ({s})": env for s, env in compose_env_by_service().items()}
    sources = {**k8s_env_by_source(), **compose_env}
    unknown = {f"{where}: {name}" for where, env in sources.items() for name in env if name not in known}
    assert unknown == set()
    assert any(sources.values()), "no CHURNWATCH_* variables found at all"


def test_the_k8s_and_compose_settings_are_valid_settings_values(monkeypatch: pytest.MonkeyPatch) -> None:
    k8s = k8s_env_by_source()
    worker_env = {
        **k8s["configmap.yaml (churnwatch-env)"], **k8s["secret.example.yaml"], **k8s["statefulset.yaml"],
    }
    worker = settings_from(worker_env, monkeypatch)
    assert worker.store == "memory://"  # what the manifests ship (operations.md, Table store)
    assert worker.standby_replicas == 1
    assert worker.web_host == "0.0.0.0"
    assert worker.kafka_security_protocol == "SASL_SSL"
    assert worker.redis_url.get_secret_value().startswith("rediss://")
    for service, env in compose_env_by_service().items():
        if env:
            settings_from(env, monkeypatch)  # raises on an invalid value
            assert service


def test_every_deploy_file_uses_the_worker_default_web_port() -> None:
    port = Settings.model_fields["web_port"].default
    worker = compose()["services"]["worker"]
    assert [str(p).rsplit(":", 1)[-1] for p in worker["ports"]] == [str(port)]
    assert worker["environment"]["CHURNWATCH_WEB_PORT"] == str(port)
    assert k8s_object("ConfigMap", "churnwatch-env")["data"]["CHURNWATCH_WEB_PORT"] == str(port)
    container = k8s_object("StatefulSet")["spec"]["template"]["spec"]["containers"][0]
    assert [p["containerPort"] for p in container["ports"]] == [port]
    assert [p["port"] for p in k8s_object("Service")["spec"]["ports"]] == [port]


# --- docker-compose ----------------------------------------------------------------------------------


def test_docker_compose_has_the_six_services_and_its_mounted_paths_exist_in_the_repo() -> None:
    services = compose()["services"]
    assert {"kafka", "redis", "topics", "worker", "prometheus", "grafana"} <= set(services)
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else str(volume).split(":", 1)[0]
            if source.startswith((".", "/")):  # a bind mount, not a named volume
                assert (REPO / source).exists(), f"{name} mounts {source}, which is not in the repo"
        build = service.get("build")
        if build is not None:
            context = build if isinstance(build, str) else build.get("context", ".")
            dockerfile = REPO / context / "Dockerfile"
            assert dockerfile.is_file(), f"{name} builds from {context} without a Dockerfile"


def test_the_compose_prometheus_reads_this_repo_s_prometheus_yml() -> None:
    prometheus = compose()["services"]["prometheus"]
    config_flag = next(arg for arg in prometheus["command"] if arg.startswith("--config.file="))
    container_path = config_flag.split("=", 1)[1]
    for volume in prometheus["volumes"]:
        source, target = str(volume).split(":")[:2]
        if container_path.startswith(target + "/"):
            assert (REPO / source / container_path[len(target) + 1:]) == PROMETHEUS_DIR / "prometheus.yml"
            return
    pytest.fail(f"{container_path} is not in a mounted folder")


# --- Kubernetes --------------------------------------------------------------------------------------


def test_every_k8s_manifest_parses_as_yaml_and_names_its_kind_and_namespace() -> None:
    assert sorted(p.name for p in K8S.glob("*.yaml")) == sorted(K8S_MANIFESTS)
    for name in K8S_MANIFESTS:
        docs = load_yaml_docs(K8S / name)
        assert docs, f"{name} is empty"
        for doc in docs:
            assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"], name
            if doc["kind"] != "Namespace":
                assert doc["metadata"]["namespace"] == "churnwatch", name


def test_the_worker_statefulset_runs_two_non_root_memory_store_workers_with_a_volume_probes_and_limits() -> None:
    sts = k8s_object("StatefulSet")
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    env = container_env(container)
    assert spec["replicas"] == 2
    assert spec["serviceName"] == k8s_object("Service")["metadata"]["name"]
    assert pod["terminationGracePeriodSeconds"] == 60
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert env["CHURNWATCH_STORE"] == "memory://"
    assert env["CHURNWATCH_STANDBY_REPLICAS"] == "1"
    assert env["CHURNWATCH_WEB_HOST"] == "0.0.0.0"
    data_mount = next(m for m in container["volumeMounts"] if m["mountPath"] == env["CHURNWATCH_DATA_DIR"])
    assert data_mount["name"] in {t["metadata"]["name"] for t in spec["volumeClaimTemplates"]}
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["resources"]["requests"] == {"cpu": "500m", "memory": "512Mi"}
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "1536Mi"}


def test_the_k8s_selectors_and_references_point_at_objects_that_exist() -> None:
    sts = k8s_object("StatefulSet")
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    service = k8s_object("Service")
    monitor = k8s_object("ServiceMonitor")
    pdb = k8s_object("PodDisruptionBudget")

    def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in selector.items())

    assert selects(sts["spec"]["selector"]["matchLabels"], pod_labels)
    assert selects(service["spec"]["selector"], pod_labels)
    assert selects(pdb["spec"]["selector"]["matchLabels"], pod_labels)
    assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    assert service["spec"]["clusterIP"] == "None"
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    # job="churnwatch", as the alert rules and compose's scrape job expect
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "churnwatch"

    configmaps = {o["metadata"]["name"] for o in k8s_objects() if o["kind"] == "ConfigMap"}
    secrets = {o["metadata"]["name"] for o in k8s_objects() if o["kind"] == "Secret"}
    for workload in (sts, k8s_object("Job")):
        pod = workload["spec"]["template"]["spec"]
        for ref in pod["containers"][0]["envFrom"]:
            if "configMapRef" in ref:
                assert ref["configMapRef"]["name"] in configmaps
            else:
                assert ref["secretRef"]["name"] in secrets
        for volume in pod.get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in configmaps
    thresholds = k8s_object("ConfigMap", "churnwatch-thresholds")
    assert "thresholds.yaml" in thresholds["data"]


def test_the_topics_job_runs_churnwatch_topics() -> None:
    container = k8s_object("Job")["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["churnwatch", "topics"]


def test_the_example_secret_holds_only_placeholders() -> None:
    secret = k8s_object("Secret")
    assert set(secret["stringData"]) == {"CHURNWATCH_KAFKA_SASL_PASSWORD", "CHURNWATCH_REDIS_URL"}
    for name, value in secret["stringData"].items():
        assert "REPLACE-ME" in value, name


# --- docs --------------------------------------------------------------------------------------------


def test_the_observability_doc_describes_every_exported_metric_and_marks_the_pending_ones_planned() -> None:
    doc = (REPO / "docs" / "observability.md").read_text()
    for family, series in exported_families().items():
        scraped = sorted(n for n in series if not n.endswith("_created"))
        assert any(f"`{n}`" in doc or f"`{family}`" in doc for n in scraped), family
    for name in PENDING_METRICS:
        row = next((line for line in doc.splitlines() if line.startswith(f"| `{name}`")), "")
        assert "planned" in row, f"{name} is not marked planned in docs/observability.md"


def test_the_operations_doc_covers_deploy_scale_recover_runbook_and_security() -> None:
    doc = (REPO / "docs" / "operations.md").read_text()
    for heading in ["## Deploy", "## Scale", "## Recover", "## Runbook", "## Security"]:
        assert re.search(rf"^{heading}$", doc, re.M), heading
    for heading in ["### Local stack without Docker", "### docker-compose", "### Kubernetes"]:
        assert re.search(rf"^{heading}$", doc, re.M), heading
