"""The Helm chart (deploy/helm/sovereign-portal) renders, with default and OpenShift values,
into objects that validate against the Kubernetes 1.31 schemas, meet the `restricted` Pod
Security Standard, and pass checkov with no failed check (skips are annotated with why).

Rendered offline by Helm v4's own engine (PyPI helm-python-sdk), no cluster needed."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy/helm/sovereign-portal"
KUBERNETES_VERSION = "1.31"
ROLES = ("web", "gateway", "worker", "beat")
# Kinds that are not Kubernetes' own (OpenShift, Prometheus Operator): no 1.31 schema.
CUSTOM_KINDS = {("route.openshift.io/v1", "Route"),
                ("monitoring.coreos.com/v1", "ServiceMonitor")}


def render(values: dict | None = None, *, openshift: bool = False) -> list[dict]:
    merged: dict = {}
    if openshift:
        merged = yaml.safe_load((CHART / "values-openshift.yaml").read_text())
    merged = _merge(merged, values or {})
    with helm.Chart.load(CHART) as chart:
        files = chart.render(merged, name="portal", namespace="portal", is_install=True)
    objects = []
    for name, text in sorted(files.items()):
        if name.endswith(".txt"):
            continue
        objects += [doc for doc in yaml.safe_load_all(text) if doc]
    return objects


def _merge(base: dict, override: dict) -> dict:
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merge(result[key], value)
        else:
            result[key] = value
    return result


def by_kind(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def pod_specs(objects: list[dict]) -> dict[str, dict]:
    specs = {}
    for obj in objects:
        if obj["kind"] in ("Deployment", "Job"):
            specs[obj["metadata"]["labels"]["app.kubernetes.io/component"]] = (
                obj["spec"]["template"]["spec"])
    return specs


@pytest.fixture(scope="module")
def default_objects():
    return render()


@pytest.fixture(scope="module")
def openshift_objects():
    return render(openshift=True)


@pytest.mark.parametrize("openshift", [False, True], ids=["default", "openshift"])
def test_every_rendered_object_validates_against_kubernetes_1_31(openshift):
    objects = render(openshift=openshift, values={
        "metrics": {"enabled": True}, "serviceMonitor": {"enabled": True}})
    checked = 0
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        checked += 1
    assert checked >= 15


@pytest.mark.parametrize("values_file", [None, "values-openshift.yaml"])
def test_helm_lint_finds_no_error(values_file):
    values = yaml.safe_load((CHART / values_file).read_text()) if values_file else None
    report = helm.lint(CHART, values, strict=True, namespace="portal",
                       kube_version=f"v{KUBERNETES_VERSION}.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert problems == []


def test_roles_run_as_separate_deployments_with_a_migrate_hook(default_objects):
    deployments = by_kind(default_objects, "Deployment")
    assert sorted(deployments) == sorted(f"portal-sovereign-portal-{r}" for r in ROLES)
    for role in ROLES:
        container = deployments[f"portal-sovereign-portal-{role}"]["spec"]["template"][
            "spec"]["containers"][0]
        assert container["args"] == [role]
    job = by_kind(default_objects, "Job")["portal-sovereign-portal-migrate"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_gateway_scales_on_cpu_and_web_and_gateway_have_disruption_budgets(default_objects):
    hpa = by_kind(default_objects, "HorizontalPodAutoscaler")["portal-sovereign-portal-gateway"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "portal-sovereign-portal-gateway"
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    # The HPA owns the gateway's replica count: the Deployment leaves it alone.
    gateway = by_kind(default_objects, "Deployment")["portal-sovereign-portal-gateway"]
    assert "replicas" not in gateway["spec"]
    budgets = by_kind(default_objects, "PodDisruptionBudget")
    for role in ("web", "gateway"):
        selector = budgets[f"portal-sovereign-portal-{role}"]["spec"]["selector"]
        assert selector["matchLabels"]["app.kubernetes.io/component"] == role


def test_secrets_are_mounted_files_named_by_the_file_variables(default_objects):
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    files = values["secrets"]["files"]
    assert set(files.values()) >= {"DATABASE_URL_FILE", "REDIS_URL_FILE", "SECRET_KEY_FILE",
                                   "PLATFORM_SIGNING_KEY_FILE"}
    for role, spec in pod_specs(default_objects).items():
        env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
        for key, variable in files.items():
            assert env[variable] == f"/run/secrets/portal/{key}", role
        secret = next(v["secret"] for v in spec["volumes"] if v["name"] == "secrets")
        assert secret["secretName"] == "sovereign-portal"
        assert sorted(i["key"] for i in secret["items"]) == sorted(files)
        assert not any("valueFrom" in e for e in spec["containers"][0]["env"]), role


def test_web_and_gateway_probe_healthz_and_readyz(default_objects):
    specs = pod_specs(default_objects)
    for role in ("web", "gateway"):
        container = specs[role]["containers"][0]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def assert_restricted(spec: dict, *, context: str) -> None:
    """The `restricted` Pod Security Standard (Kubernetes 1.31), rule by rule."""
    pod = spec.get("securityContext", {})
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(key), context
    allowed_volumes = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                       "persistentVolumeClaim", "projected", "secret"}
    for volume in spec.get("volumes", []):
        assert set(volume) - {"name"} <= allowed_volumes, (context, volume)
    for container in spec["containers"] + spec.get("initContainers", []):
        ctx = container.get("securityContext", {})
        assert ctx.get("allowPrivilegeEscalation") is False, context
        assert not ctx.get("privileged"), context
        assert ctx.get("capabilities", {}).get("drop") == ["ALL"], context
        assert set(ctx.get("capabilities", {}).get("add", [])) <= {"NET_BIND_SERVICE"}, context
        assert (ctx.get("runAsNonRoot") or pod.get("runAsNonRoot")) is True, context
        assert ctx.get("runAsUser", pod.get("runAsUser")) != 0, context
        seccomp = ctx.get("seccompProfile") or pod.get("seccompProfile") or {}
        assert seccomp.get("type") in ("RuntimeDefault", "Localhost"), context
        assert not container.get("ports") or all(
            "hostPort" not in p for p in container["ports"]), context
        assert ctx.get("readOnlyRootFilesystem") is True, context


@pytest.mark.parametrize("openshift", [False, True], ids=["default", "openshift"])
def test_every_pod_meets_the_restricted_pod_security_standard(openshift):
    specs = pod_specs(render(openshift=openshift))
    assert sorted(specs) == sorted([*ROLES, "migrate"])
    for role, spec in specs.items():
        assert_restricted(spec, context=role)
        assert spec["automountServiceAccountToken"] is False


def test_openshift_values_leave_uids_to_the_scc_and_use_routes(openshift_objects):
    for role, spec in pod_specs(openshift_objects).items():
        for key in ("runAsUser", "runAsGroup", "fsGroup"):
            assert key not in spec["securityContext"], (role, key)
    assert not by_kind(openshift_objects, "Ingress")
    routes = by_kind(openshift_objects, "Route")
    services = by_kind(openshift_objects, "Service")
    paths = {r["spec"]["path"]: r["spec"]["to"]["name"] for r in routes.values()}
    assert paths == {"/v1/": "portal-sovereign-portal-gateway",
                     "/": "portal-sovereign-portal-web"}
    for route in routes.values():
        assert route["spec"]["to"]["name"] in services
        assert route["spec"]["tls"]["termination"] == "edge"
        assert route["spec"]["port"]["targetPort"] == "http"


def test_ingress_sends_v1_to_the_gateway_and_the_rest_to_web(default_objects):
    ingress = by_kind(default_objects, "Ingress")["portal-sovereign-portal"]
    paths = {p["path"]: p["backend"]["service"]["name"]
             for p in ingress["spec"]["rules"][0]["http"]["paths"]}
    assert paths == {"/v1/": "portal-sovereign-portal-gateway",
                     "/": "portal-sovereign-portal-web"}


def test_network_policies_fence_every_role(default_objects):
    policies = {p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]: p
                for p in by_kind(default_objects, "NetworkPolicy").values()}
    assert sorted(policies) == sorted([*ROLES, "migrate"])
    for role, policy in policies.items():
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"], role
    ingress_from = yaml.safe_load((CHART / "values.yaml").read_text())[
        "networkPolicy"]["ingressFrom"]
    gateway = policies["gateway"]["spec"]
    assert [rule["from"] for rule in gateway["ingress"]] == [ingress_from]
    for role in ("worker", "beat", "migrate"):
        assert policies[role]["spec"]["ingress"] == [], role
    # Workers reach DNS, the database, Redis, the registry, the clusters and the IdP only:
    # mail and webhooks stay closed until configured.
    worker_ports = [sorted(p["port"] for p in rule["ports"])
                    for rule in policies["worker"]["spec"]["egress"]]
    assert worker_ports == [[53, 53], [5432], [6379], [443], [443, 6443], [443]]
    assert [sorted(p["port"] for p in rule["ports"])
            for rule in policies["beat"]["spec"]["egress"]] == [[53, 53], [6379]]


def test_egress_peers_come_from_values():
    database = [{"ipBlock": {"cidr": "10.20.0.0/24"}}]
    objects = render({"networkPolicy": {"egress": {"database": {"to": database}}}})
    worker = next(p for p in by_kind(objects, "NetworkPolicy").values()
                  if p["metadata"]["name"].endswith("-worker"))
    rule = next(r for r in worker["spec"]["egress"]
                if [p["port"] for p in r["ports"]] == [5432])
    assert rule["to"] == database


def test_service_monitor_is_off_by_default_and_scrapes_the_metrics_port(default_objects):
    assert not by_kind(default_objects, "ServiceMonitor")
    objects = render({"metrics": {"enabled": True}, "serviceMonitor": {"enabled": True}})
    monitor = by_kind(objects, "ServiceMonitor")["portal-sovereign-portal"]
    assert monitor["spec"]["endpoints"][0] == {"port": "metrics", "path": "/metrics",
                                               "interval": "30s"}
    for role in ("web", "gateway"):
        service = by_kind(objects, "Service")[f"portal-sovereign-portal-{role}"]
        assert "metrics" in [p["name"] for p in service["spec"]["ports"]]
    with pytest.raises(helm.HelmError, match="needs metrics.enabled"):
        render({"serviceMonitor": {"enabled": True}})


def test_image_digest_pins_the_image():
    digest = "sha256:" + "a" * 64
    objects = render({"image": {"digest": digest}})
    for spec in pod_specs(objects).values():
        assert spec["containers"][0]["image"].endswith(f"@{digest}")


@pytest.mark.parametrize("openshift", [False, True], ids=["default", "openshift"])
def test_checkov_finds_nothing(openshift, tmp_path):
    checkov = os.environ.get("CHECKOV_BIN", str(ROOT / "var/tools/checkov/bin/checkov"))
    if not Path(checkov).is_file():
        pytest.fail("checkov is not installed: run the tests through scripts/test.sh, which "
                    "installs it into var/tools/checkov")
    objects = render(openshift=openshift, values={
        "image": {"digest": "sha256:" + "a" * 64},
        "metrics": {"enabled": True}, "serviceMonitor": {"enabled": True}})
    for number, obj in enumerate(objects):
        (tmp_path / f"{number:02d}-{obj['kind']}.yaml").write_text(yaml.safe_dump(obj))
    completed = subprocess.run(
        [checkov, "--directory", str(tmp_path), "--framework", "kubernetes", "--output", "json",
         "--compact", "--skip-download"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    report = json.loads(completed.stdout)
    results = report["results"] if isinstance(report, dict) else report[0]["results"]
    failed = [(c["check_id"], c["resource"]) for c in results["failed_checks"]]
    assert failed == []
    assert results["passed_checks"]
    # Every skip carries its reason in the chart (checkov.io/skip annotations).
    # Probes of roles without HTTP; on OpenShift, the uid the SCC assigns.
    allowed = {"CKV_K8S_8", "CKV_K8S_9"} | ({"CKV_K8S_40"} if openshift else set())
    for check in results["skipped_checks"]:
        assert check["check_id"] in allowed, check["check_id"]


def test_metrics_port_env_and_network_policy_for_web_gateway_and_workers():
    objects = render({"metrics": {"enabled": True}, "serviceMonitor": {"enabled": True}})
    specs = pod_specs(objects)
    for role in ("web", "gateway", "worker"):
        container = specs[role]["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["METRICS_PORT"] == "9100" and env["METRICS_HOST"] == "0.0.0.0", role
        assert {"name": "metrics", "containerPort": 9100, "protocol": "TCP"} in container[
            "ports"], role
    assert "ports" not in specs["beat"]["containers"][0]
    # Workers have no traffic port; a headless Service lets the ServiceMonitor find them.
    assert [p["name"] for p in specs["worker"]["containers"][0]["ports"]] == ["metrics"]
    worker_service = by_kind(objects, "Service")["portal-sovereign-portal-worker-metrics"]
    assert worker_service["spec"]["clusterIP"] == "None"
    monitor = by_kind(objects, "ServiceMonitor")["portal-sovereign-portal"]
    components = monitor["spec"]["selector"]["matchExpressions"][1]["values"]
    assert components == ["web", "gateway", "worker"]
    metrics_from = yaml.safe_load((CHART / "values.yaml").read_text())[
        "networkPolicy"]["metricsFrom"]
    policies = {p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]: p
                for p in by_kind(objects, "NetworkPolicy").values()}
    for role in ("web", "gateway", "worker"):
        metrics_rules = [rule for rule in policies[role]["spec"]["ingress"]
                         if rule["ports"] == [{"port": 9100, "protocol": "TCP"}]]
        assert [rule["from"] for rule in metrics_rules] == [metrics_from], role
    # The Ingress never routes to the metrics port.
    for ingress in by_kind(objects, "Ingress").values():
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                assert path["backend"]["service"]["port"]["name"] == "http"


def test_tracing_endpoint_and_its_egress():
    objects = render({"tracing": {"otlpEndpoint": "http://otel.observability:4318"},
                      "networkPolicy": {"egress": {"otlp": {"enabled": True}}}})
    for role, spec in pod_specs(objects).items():
        env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel.observability:4318", role
    policies = {p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]: p
                for p in by_kind(objects, "NetworkPolicy").values()}
    for role in ("web", "gateway", "worker"):
        assert [{"port": 4318, "protocol": "TCP"}] in [
            rule["ports"] for rule in policies[role]["spec"]["egress"]], role
    assert [{"port": 4318, "protocol": "TCP"}] not in [
        rule["ports"] for rule in pod_network_policy(render(), "web")["spec"]["egress"]]


def pod_network_policy(objects, role):
    return next(p for p in by_kind(objects, "NetworkPolicy").values()
                if p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == role)


def test_grafana_dashboard_configmap_uses_only_metrics_the_portal_exports():
    import re

    from gateway.metrics import COUNTERS, GAUGES, HISTOGRAMS

    assert not by_kind(render(), "ConfigMap")
    objects = render({"grafanaDashboard": {"enabled": True}})
    config_map = by_kind(objects, "ConfigMap")["portal-sovereign-portal-dashboard"]
    kubernetes_validate.validate(config_map, KUBERNETES_VERSION, strict=True)
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["sovereign-portal.json"])
    assert dashboard["uid"] == "sovereign-portal"
    exported = {f"{name}_total" for name in COUNTERS} | set(GAUGES) | {
        f"{name}{suffix}" for name in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")}
    exported |= set(re.findall(r'"(portal_[a-z_]+)"',
                               (ROOT / "portal/metrics.py").read_text()))
    exported.add("portal_celery_tasks_total")
    used = {name for panel in dashboard["panels"] for target in panel.get("targets", [])
            for name in re.findall(r"portal_[a-z_]+", target["expr"])}
    assert used and used <= exported, used - exported
