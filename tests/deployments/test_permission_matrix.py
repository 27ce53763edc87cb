"""Who may call what: every URL of deployments/urls.py and deployments/api_urls.py, with every
HTTP method it serves, for every kind of person.

MSP pages and MSP API endpoints: anonymous people are sent to the login page (pages) or
refused 401/403 (API); tenant admins, developers, viewers and compliance officers get 403 and
change nothing (no audit event, no row, no call to the cluster, nothing queued); MSP admins
get the success status. The tenant's read-only deployment pages: members 200, members of
another tenant 404, POST 405. A URL added to either module without an entry here fails
`test_the_matrix_covers_every_url`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from unittest import mock

import pytest
from django.urls import URLPattern, reverse

from audit.models import AuditEvent
from deployments import api_urls, services, urls
from deployments.models import (
    Cluster,
    Deployment,
    DeploymentStatus,
    LLMServicePreset,
    TenantNamespace,
)
from models_catalog.models import Model
from tests.deployments.conftest import GPU, RUNTIME_IMAGE, preset_fields
from tests.deployments.test_kserve_lifecycle import become_ready, deploy
from tests.factories import published_version
from tests.support.processes import start_upstream, stop

S = DeploymentStatus
MISSING = 987654
DENIED_ROLES = ["tenant_admin", "developer", "viewer", "compliance_officer"]
WRITES = ("POST", "PUT", "PATCH", "DELETE")


@pytest.fixture(scope="module")
def upstream():
    process, base = start_upstream("--models", "local-llm")
    yield base
    stop(process)


@dataclass
class World:
    cluster: Cluster  # has a ready KServe deployment
    idle: Cluster  # has no deployments: may be deleted
    kserve: Deployment
    external: Deployment
    v2: object
    kube: object
    upstream: str
    tenant: object
    preset: LLMServicePreset  # no deployment uses it: may be deleted


@pytest.fixture
def world(msp_admin, cluster, version, kube, upstream, tenant):
    idle = services.cluster_create(actor=msp_admin, name="idle-1", api_url=kube.url,
                                   jurisdiction="DE", credentials=kube.token)
    kserve = become_ready(kube, deploy(msp_admin, cluster, version))
    external = services.external_endpoint_register(actor=msp_admin, base_url=upstream,
                                                   model_slug="local-llm", task="chat")
    assert external.status == S.READY
    services.tenant_namespace_ensure(cluster=cluster, tenant=tenant)
    return World(cluster=cluster, idle=idle, kserve=kserve, external=external,
                 v2=published_version(version.model, version="2.0"), kube=kube,
                 upstream=upstream, tenant=tenant,
                 preset=services.llm_preset_create(actor=msp_admin, **preset_fields()))


def _set(**fields) -> Callable[[World], None]:
    def prepare(w: World) -> None:
        values = {k: (v(w) if callable(v) else v) for k, v in fields.items()}
        Deployment.objects.filter(pk=w.kserve.pk).update(**values)
    return prepare


@dataclass
class Case:
    name: str  # route name: "deployments:…" for pages, "api-…" for the API
    method: str
    target: str | None  # which object's pk goes in the URL: cluster, idle, kserve, external
    status: int  # what an MSP admin gets
    data: Callable[[World], dict] = field(default=lambda w: {})
    audit: str | None = None  # the audit action an MSP admin's call records
    prepare: Callable[[World], None] | None = None

    @property
    def api(self) -> bool:
        return not self.name.startswith("deployments:")

    def __str__(self) -> str:
        return f"{self.method} {self.name}" + (f"[{self.target}]" if self.target else "")

    def url(self, w: World, pk: int | None = None) -> str:
        if self.target is None:
            return reverse(self.name)
        if pk is None:
            pk = getattr(w, self.target).pk
        return reverse(self.name, kwargs={"pk": pk})


def cluster_form(w: World, name: str = "muc-2") -> dict:
    return {"name": name, "api_url": w.kube.url, "jurisdiction": "DE",
            "credential_kind": "token", "credentials": w.kube.token, "ca_bundle": "",
            "gateway_namespace": "istio-system", "default_mode": "Standard",
            "capacity": f"{GPU}=4"}


def external_form(w: World, **overrides) -> dict:
    data = {"model": "", "model_slug": "second-llm", "task": "chat", "base_url": w.upstream,
            "upstream_model": "local-llm", "upstream_api_key": "", "tenant": "",
            "name": "Second"}
    data.update(overrides)
    return data


def preset_form(w: World, name: str = "h100-tp2", **overrides) -> dict:
    data = {"name": name, "description": "", "runtime_image": RUNTIME_IMAGE,
            "runtime_args": "--max-model-len=8192", "gpu_product": GPU, "gpu_count": 2,
            "cpu": "8", "memory": "64Gi", "tensor_parallel": 2, "data_parallel": 1,
            "data_local_parallel": 1, "pipeline_parallel": 1, "scheduler": "default",
            "scheduler_replicas": 1, "scheduler_config": "", "kv_offload_cpu": "",
            "kv_offload_policy": "lru", "kv_offload_disk": ""}
    data.update(overrides)
    return data


def scale_form(w: World) -> dict:
    return {"min_replicas": 1, "max_replicas": 3, "scale_metric": "", "scale_target": ""}


CANARY = {"canary_version": lambda w: w.v2, "canary_traffic_percent": 10}

PAGES = [
    Case("deployments:clusters", "GET", None, 200),
    Case("deployments:cluster_create", "GET", None, 200),
    Case("deployments:cluster_create", "POST", None, 302, cluster_form, "cluster.created"),
    Case("deployments:cluster", "GET", "cluster", 200),
    Case("deployments:cluster_edit", "GET", "cluster", 200),
    Case("deployments:cluster_edit", "POST", "cluster", 302,
         lambda w: {**cluster_form(w, name=w.cluster.name), "capacity": f"{GPU}=6"},
         "cluster.updated"),
    Case("deployments:cluster_delete", "GET", "idle", 200),
    Case("deployments:cluster_delete", "POST", "idle", 302, audit="cluster.deleted"),
    Case("deployments:cluster_check", "POST", "cluster", 302, audit="cluster.checked"),
    Case("deployments:cluster_sync_namespaces", "POST", "cluster", 302,
         audit="cluster.namespaces_sync_requested"),
    Case("deployments:list", "GET", None, 200),
    Case("deployments:wizard", "GET", None, 200),
    Case("deployments:wizard", "POST", None, 200,
         lambda w: {"version": w.kserve.version_id, "tenant": "", "step": 0}),
    Case("deployments:external_create", "GET", None, 200),
    Case("deployments:external_create", "POST", None, 302, external_form,
         "deployment.registered"),
    Case("deployments:external_edit", "GET", "external", 200),
    Case("deployments:external_edit", "POST", "external", 302,
         lambda w: {"base_url": w.upstream, "upstream_model": "local-llm", "name": "Renamed",
                    "upstream_api_key": ""}, "deployment.endpoint_updated"),
    Case("deployments:detail", "GET", "kserve", 200),
    Case("deployments:detail", "GET", "external", 200),
    Case("deployments:check", "POST", "external", 302),
    Case("deployments:manifest", "GET", "kserve", 200),
    Case("deployments:update", "POST", "kserve", 302,
         lambda w: {"version": w.v2.pk, "canary_traffic_percent": ""}, "deployment.updated"),
    Case("deployments:update_preview", "POST", "kserve", 200,
         lambda w: {"version": w.v2.pk, "canary_traffic_percent": "10"}),
    Case("deployments:scale", "POST", "kserve", 302, scale_form, "deployment.scaled"),
    Case("deployments:retry", "POST", "kserve", 302, audit="deployment.retried",
         prepare=_set(status=S.FAILED)),
    Case("deployments:promote", "POST", "kserve", 302, audit="deployment.promoted",
         prepare=_set(**CANARY)),
    Case("deployments:rollback", "POST", "kserve", 302, audit="deployment.rolled_back",
         prepare=_set(**CANARY)),
    Case("deployments:stop", "POST", "kserve", 302, audit="deployment.stopping"),
    Case("deployments:start", "POST", "kserve", 302, audit="deployment.started",
         prepare=_set(status=S.STOPPED, stop_requested=True)),
    Case("deployments:delete", "POST", "kserve", 302, audit="deployment.deleting"),
    Case("deployments:llm_presets", "GET", None, 200),
    Case("deployments:llm_preset_create", "GET", None, 200),
    Case("deployments:llm_preset_create", "POST", None, 302, preset_form, "llm_preset.created"),
    Case("deployments:llm_preset", "GET", "preset", 200),
    Case("deployments:llm_preset_edit", "GET", "preset", 200),
    Case("deployments:llm_preset_edit", "POST", "preset", 302,
         lambda w: preset_form(w, name=w.preset.name, gpu_count=1, tensor_parallel=1,
                               description="Edited"), "llm_preset.updated"),
    Case("deployments:llm_preset_delete", "GET", "preset", 200),
    Case("deployments:llm_preset_delete", "POST", "preset", 302, audit="llm_preset.deleted"),
]

API = [
    Case("api-clusters", "GET", None, 200),
    Case("api-clusters", "POST", None, 201,
         lambda w: {"name": "ber-1", "api_url": w.kube.url, "jurisdiction": "DE",
                    "credentials": w.kube.token}, "cluster.created"),
    Case("api-cluster", "GET", "cluster", 200),
    Case("api-cluster", "PATCH", "cluster", 200, lambda w: {"gpu_capacity": {GPU: 6}},
         "cluster.updated"),
    Case("api-cluster", "DELETE", "idle", 204, audit="cluster.deleted"),
    Case("api-cluster-check", "POST", "cluster", 200, audit="cluster.checked"),
    Case("api-cluster-namespaces", "GET", "cluster", 200),
    Case("api-cluster-namespaces-sync", "POST", "cluster", 202,
         audit="cluster.namespaces_sync_requested"),
    Case("api-deployments", "GET", None, 200),
    Case("api-deployments", "POST", None, 201,
         lambda w: {"version": w.v2.pk, "cluster": w.cluster.pk, "name": "second",
                    "runtime": "kserve-vllmserver", "cpu": "1", "memory": "1Gi"},
         "deployment.created"),
    Case("api-gpu-allocation", "GET", None, 200),
    Case("api-deployments-external", "POST", None, 201,
         lambda w: {"model": "second-llm", "task": "chat", "base_url": w.upstream,
                    "upstream_model": "local-llm"}, "deployment.registered"),
    Case("api-deployment", "GET", "kserve", 200),
    Case("api-deployment", "DELETE", "kserve", 202, audit="deployment.deleting"),
    Case("api-deployment-endpoint", "PATCH", "external", 200, lambda w: {"name": "Renamed"},
         "deployment.endpoint_updated"),
    Case("api-deployment-check", "POST", "external", 200),
    Case("api-deployment-manifest", "GET", "kserve", 200),
    Case("api-deployment-update", "POST", "kserve", 202, lambda w: {"version": w.v2.pk},
         "deployment.updated"),
    Case("api-deployment-scale", "POST", "kserve", 202,
         lambda w: {"min_replicas": 1, "max_replicas": 3}, "deployment.scaled"),
    Case("api-deployment-retry", "POST", "kserve", 202, audit="deployment.retried",
         prepare=_set(status=S.FAILED)),
    Case("api-deployment-promote", "POST", "kserve", 202, audit="deployment.promoted",
         prepare=_set(**CANARY)),
    Case("api-deployment-rollback", "POST", "kserve", 202, audit="deployment.rolled_back",
         prepare=_set(**CANARY)),
    Case("api-deployment-stop", "POST", "kserve", 202, audit="deployment.stopping"),
    Case("api-deployment-start", "POST", "kserve", 202, audit="deployment.started",
         prepare=_set(status=S.STOPPED, stop_requested=True)),
    Case("api-llm-presets", "GET", None, 200),
    Case("api-llm-presets", "POST", None, 201, lambda w: preset_fields(name="h100-tp2"),
         "llm_preset.created"),
    Case("api-llm-preset", "GET", "preset", 200),
    Case("api-llm-preset", "PATCH", "preset", 200, lambda w: {"description": "Edited"},
         "llm_preset.updated"),
    Case("api-llm-preset", "DELETE", "preset", 204, audit="llm_preset.deleted"),
]

MSP_CASES = PAGES + API
TENANT_ROUTES = {"deployments:tenant_list": ("GET",), "api-tenant-deployments": ("GET",)}


def _route_names() -> tuple[set[str], dict[str, set[str]]]:
    """Route names of both modules, and the HTTP methods each API view implements."""
    pages = {f"deployments:{p.name}" for p in urls.urlpatterns}
    methods: dict[str, set[str]] = {}
    for pattern in api_urls.urlpatterns:
        assert isinstance(pattern, URLPattern)
        view = pattern.callback.view_class
        methods[pattern.name] = {m.upper() for m in ("get", "post", "put", "patch", "delete")
                                 if hasattr(view, m)}
    return pages | set(methods), methods


def test_the_matrix_covers_every_url():
    names, api_methods = _route_names()
    covered = {c.name for c in MSP_CASES} | set(TENANT_ROUTES)
    assert covered == names, (f"not in the matrix: {sorted(names - covered)}; "
                              f"not in the URLconf: {sorted(covered - names)}")
    for name, methods in api_methods.items():
        tested = {c.method for c in MSP_CASES if c.name == name} or set(
            TENANT_ROUTES.get(name, ()))
        assert tested == methods, f"{name}: view serves {methods}, matrix tests {tested}"


def _call(client, case: Case, w: World, pk: int | None = None):
    url = case.url(w, pk)
    data = case.data(w)
    do = getattr(client, case.method.lower())
    if case.api:
        return do(url, data, content_type="application/json") if data else do(url)
    return do(url, data) if case.method == "POST" else do(url)


def _snapshot() -> dict:
    return {
        "audit": AuditEvent.objects.count(),
        "clusters": list(Cluster.objects.order_by("pk").values()),
        "deployments": list(Deployment.objects.order_by("pk").values()),
        "namespaces": list(TenantNamespace.objects.order_by("pk").values()),
        "presets": list(LLMServicePreset.objects.order_by("pk").values()),
        "models": Model.objects.count(),
    }


@pytest.fixture
def queued():
    """Tasks that a call would queue, caught instead of reaching the broker."""
    with mock.patch("deployments.tasks.sync_tenant_namespace.delay") as sync, \
            mock.patch("deployments.tasks.drive_deployment.delay") as drive:
        yield [sync, drive]


def _people(request, role: str):
    return request.getfixturevalue(role)


@pytest.mark.parametrize("case", MSP_CASES, ids=str)
def test_everyone_but_msp_admins_is_refused_and_changes_nothing(request, client, world,
                                                                queued, case):
    """Anonymous people are sent to log in (the API answers 401); tenant admins, developers,
    viewers and compliance officers get 403; MSP admins get 404 for ids that do not exist.
    None of it changes a row, writes to the cluster or queues a task. (One test per URL with
    every person inside: building the world — an emulated cluster, a ready deployment, a
    running upstream — is the expensive part.)"""
    if case.prepare:
        case.prepare(world)
    before = _snapshot()
    writes = sum(world.kube.count(m) for m in WRITES)
    response = _call(client, case, world)
    if case.api:
        assert response.status_code == 401, response.content
    else:
        assert response.status_code == 302
        assert response.url.startswith(reverse("account_login") + "?next=")
    for role in DENIED_ROLES:
        client.force_login(_people(request, role))
        response = _call(client, case, world)
        assert response.status_code == 403, (role, response.content[:300])
    if case.target:
        client.force_login(request.getfixturevalue("msp_admin"))
        response = _call(client, case, world, pk=MISSING)
        assert response.status_code == 404, response.content[:300]
    assert _snapshot() == before
    assert sum(world.kube.count(m) for m in WRITES) == writes
    assert not any(q.called for q in queued)


@pytest.mark.parametrize("case", MSP_CASES, ids=str)
def test_msp_admins_succeed(client, msp_admin, world, queued, case):
    if case.prepare:
        case.prepare(world)
    seq = AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first()
    client.force_login(msp_admin)
    response = _call(client, case, world)
    assert response.status_code == case.status, response.content[:500]
    if case.status == 302:
        # A refusal is a redirect too, with an error message: there must be none.
        assert not [m for m in response.wsgi_request._messages if m.level_tag == "error"]
    if case.audit:
        assert AuditEvent.objects.filter(pk__gt=seq, action=case.audit).exists(), list(
            AuditEvent.objects.filter(pk__gt=seq).values_list("action", flat=True))


TENANT_URLS = {"deployments:tenant_list": lambda slug: f"/t/{slug}/deployments/",
               "api-tenant-deployments": lambda slug: f"/api/tenants/{slug}/deployments/"}


@pytest.mark.parametrize("name", sorted(TENANT_URLS))
@pytest.mark.parametrize("role,status", [
    ("tenant_admin", 200), ("developer", 200), ("viewer", 200), ("msp_admin", 200),
    ("outsider", 404), ("compliance_officer", 404)])
def test_the_tenant_deployment_pages(request, client, world, name, role, status):
    url = TENANT_URLS[name]("acme")
    assert url == reverse(name, kwargs={"tenant_slug" if name.startswith("deployments:")
                                        else "slug": "acme"})
    client.force_login(_people(request, role))
    assert client.get(url).status_code == status
    before = _snapshot()
    # Read-only: the method is refused (405) before the tenant is looked up, so outsiders get
    # 405 too — the same as for a tenant that does not exist, so it tells them nothing.
    assert client.post(url).status_code == 405
    assert client.post(TENANT_URLS[name]("no-such-tenant")).status_code == 405
    assert _snapshot() == before
    if role == "msp_admin":
        assert client.get(TENANT_URLS[name]("no-such-tenant")).status_code == 404


@pytest.mark.parametrize("name", sorted(TENANT_URLS))
def test_the_tenant_deployment_pages_for_anonymous_people(client, world, name):
    url = TENANT_URLS[name]("acme")
    for method in ("get", "post"):
        response = getattr(client, method)(url)
        if name.startswith("api-"):
            assert response.status_code == 401
        else:
            assert response.status_code in (302, 405)
            if method == "get":
                assert response.url.startswith(reverse("account_login") + "?next=")
