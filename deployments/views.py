"""MSP admin pages: clusters, the deploy wizard, deployment list and detail with actions."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from deployments import selectors, services
from deployments.backends import backend_for, manifest_diff, manifest_yaml, to_yaml
from deployments.forms import (
    RESOURCE_STEPS,
    WIZARD_STEPS,
    ClusterForm,
    ExternalEndpointEditForm,
    ExternalEndpointForm,
    LLMPresetForm,
    LLMScaleForm,
    ScaleForm,
    UpdateVersionForm,
)
from deployments.models import CLUSTER_BACKENDS, Backend, Cluster, Deployment, DeploymentStatus
from models_catalog.selectors import NOT_CONFIGURED, RegistryNotConfigured, registry_configured
from portal.api import ApplicationError
from portal.forms import add_service_errors, form_page, submit_edit
from portal.htmx import render_page_or_partial, wants_partial
from tenants.access import platform_view, tenant_view
from tenants.permissions import PlatformPerm, TenantPerm

MANAGE = PlatformPerm.DEPLOYMENTS_MANAGE


# --- Clusters -----------------------------------------------------------------------------

@platform_view(MANAGE)
def cluster_list(request: HttpRequest) -> HttpResponse:
    return render(request, "deployments/cluster_list.html", {
        "clusters": _cluster_choices(), "allocation": selectors.gpu_allocation()})


@platform_view(MANAGE)
def cluster_create(request: HttpRequest) -> HttpResponse:
    """Add a cluster, check it at once (the outcome shows on its page), and go to its
    page."""
    form = ClusterForm(request.POST or None)

    def added(cluster: Cluster) -> HttpResponse:
        services.cluster_check(actor=request.user, cluster=cluster)
        messages.success(request, f"Cluster {cluster.name} added.")
        return redirect("deployments:cluster", pk=cluster.pk)
    return form_page(request, form, lambda: services.cluster_create(
        actor=request.user, credentials=form.cleaned_data["credentials"],
        **form.service_fields()), template="deployments/cluster_form.html", done=added)


def _cluster_changes(form: ClusterForm) -> dict:
    """The form's fields for `cluster_update`, but the name, which never changes."""
    return {key: value for key, value in form.service_fields().items() if key != "name"}


@platform_view(MANAGE)
def cluster_edit(request: HttpRequest, pk: int) -> HttpResponse:
    cluster = selectors.cluster_get(pk)
    form = ClusterForm(request.POST or None, instance=cluster)
    if request.method == "POST" and submit_edit(form, lambda: services.cluster_update(
            actor=request.user, cluster=cluster, credentials=form.cleaned_data["credentials"],
            **_cluster_changes(form))) is not None:
        messages.success(request, f"Saved changes to {cluster.name}.")
        return redirect("deployments:cluster", pk=cluster.pk)
    return render(request, "deployments/cluster_form.html", {"form": form, "cluster": cluster})


@platform_view(MANAGE)
def cluster_detail(request: HttpRequest, pk: int) -> HttpResponse:
    cluster = selectors.cluster_get(pk)
    free = selectors.cluster_free_gpus(cluster)
    return render(request, "deployments/cluster_detail.html", {
        "cluster": cluster,
        "gpus": [(p, cluster.gpu_capacity[p], free[p]) for p in cluster.gpu_products],
        "allowed": services.jurisdiction_allowed(cluster.jurisdiction),
        "allowed_jurisdictions": settings.ALLOWED_JURISDICTIONS,
        "deployments": selectors.cluster_deployment_list(cluster=cluster),
        "namespaces": selectors.cluster_namespace_list(cluster=cluster),
    })


@require_POST
@platform_view(MANAGE)
def cluster_check(request: HttpRequest, pk: int) -> HttpResponse:
    cluster = services.cluster_check(actor=request.user, cluster=selectors.cluster_get(pk))
    (messages.success if cluster.last_check_ok else messages.error)(
        request, cluster.last_check_message)
    return redirect("deployments:cluster", pk=pk)


def _delete_page(request: HttpRequest, delete: Callable[[], object], *, template: str,
                 context: Callable[[], dict], refused: str, notice: str,
                 done: str) -> HttpResponse:
    """A delete page. GET: `template` with `context()` (what deleting means, or what blocks
    it now). POST: `delete()`, then `notice` and on to `done`; when the service refuses, its
    message and back to `refused` (both URLs)."""
    if request.method != "POST":
        return render(request, template, context())
    try:
        delete()
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect(refused)
    messages.success(request, notice)
    return redirect(done)


@platform_view(MANAGE)
def cluster_delete(request: HttpRequest, pk: int) -> HttpResponse:
    cluster = selectors.cluster_get(pk)
    return _delete_page(
        request, lambda: services.cluster_delete(actor=request.user, cluster=cluster),
        template="deployments/cluster_delete.html", context=lambda: {
            "cluster": cluster,
            "blocking": selectors.cluster_deployment_list(cluster=cluster),
            "kept": selectors.cluster_deleted_deployment_count(cluster=cluster)},
        refused=reverse("deployments:cluster", kwargs={"pk": pk}),
        notice=f"Cluster {cluster.name} deleted. Its deleted deployments keep their history.",
        done=reverse("deployments:clusters"))


@require_POST
@platform_view(MANAGE)
def cluster_sync_namespaces(request: HttpRequest, pk: int) -> HttpResponse:
    cluster = selectors.cluster_get(pk)
    count = services.cluster_namespaces_sync(actor=request.user, cluster=cluster)
    messages.success(request, f"Syncing {count} tenant namespaces on {cluster.name} "
                              "in the background; refresh to see the outcome.")
    return redirect("deployments:cluster", pk=pk)


# --- The deploy wizard --------------------------------------------------------------------

WIZARD_FIELDS = {name for step in [*WIZARD_STEPS, *RESOURCE_STEPS.values()]
                 for name in step.base_fields}
REVIEW = len(WIZARD_STEPS)


def _chosen_backend(forms) -> str:
    """The backend chosen on the cluster step (InferenceService until then)."""
    if len(forms) > 1 and forms[1].is_valid():
        return forms[1].cleaned_data["backend"]
    return Backend.KSERVE


def _bound_steps(data, count: int) -> list:
    """Bound forms of the first `count` steps (the cluster and the backend chosen on the
    second step decide the third)."""
    forms: list = []
    for index, step in enumerate(WIZARD_STEPS[:count]):
        kwargs = {}
        if index == 1:
            kwargs["version"] = forms[0].cleaned_data.get("version") if forms[0].is_valid() \
                else None
        if index == 2:
            kwargs["cluster"] = forms[1].cleaned_data.get("cluster") if forms[1].is_valid() \
                else None
            step = RESOURCE_STEPS[_chosen_backend(forms)]
        forms.append(step(data, **kwargs))
    return forms


def _build(forms) -> Deployment:
    target, where, resources = (f.cleaned_data for f in forms)
    if where["backend"] == Backend.LLMISVC:
        return services.llm_deployment_build(
            version=target["version"], tenant=target["tenant"], cluster=where["cluster"],
            preset=resources["preset"], name=resources["name"],
            min_replicas=resources["min_replicas"], max_replicas=resources["max_replicas"],
            autoscaler=resources["autoscaler"], prefill_replicas=resources["prefill_replicas"])
    return services.kserve_deployment_build(
        version=target["version"], tenant=target["tenant"], cluster=where["cluster"],
        mode=where["mode"], name=resources["name"], runtime=resources["runtime"],
        gpu_product=resources["gpu_product"], gpu_count=resources["gpu_count"],
        cpu=resources["cpu"], memory=resources["memory"],
        min_replicas=resources["min_replicas"], max_replicas=resources["max_replicas"],
        scale_metric=resources["scale_metric"], scale_target=resources["scale_target"],
        extra_args=resources["extra_args"])


@platform_view(MANAGE)
def deployment_wizard(request: HttpRequest) -> HttpResponse:
    """Steps 0–2 collect fields (earlier and later answers travel as hidden inputs); step 3
    shows the exact manifest after every refusal check; "apply" creates the deployment."""
    data = request.POST if request.method == "POST" else None
    manifest, current = "", None
    try:
        submitted = min(max(int(data.get("step", "0")), 0), REVIEW) if data else -1
    except ValueError:
        submitted = 0
    target = 0 if data is None else (
        max(submitted - 1, 0) if data.get("back") else min(submitted + 1, REVIEW))
    done = _bound_steps(data, target) if data else []
    invalid = next((i for i, form in enumerate(done) if not form.is_valid()), None)
    if invalid is not None:
        target, current = invalid, done[invalid]
    elif target == REVIEW:
        deployment = _build(done)
        try:
            if data.get("apply"):
                deployment = services.kserve_deployment_create(actor=request.user,
                                                               deployment=deployment)
                messages.success(request, f"Deployment {deployment.name} created; a worker "
                                          "applies it now.")
                url = reverse("deployments:detail", args=[deployment.pk])
                if request.htmx:
                    return HttpResponse(status=204, headers={"HX-Redirect": url})
                return redirect(url)
            services.kserve_deployment_validate(actor=request.user, deployment=deployment)
            manifest = manifest_yaml(deployment)
        except ApplicationError as exc:
            target, current = 2, done[2]
            add_service_errors(current, exc)
    backend = _chosen_backend(done)
    if current is None and target < REVIEW:
        kwargs = ({"cluster": done[1].cleaned_data["cluster"]} if target == 2
                  else {"version": _chosen_version(done)} if target == 1 else {})
        initial = {k: v for k, v in data.items()} if data else {}
        step = RESOURCE_STEPS[backend] if target == 2 else WIZARD_STEPS[target]
        current = step(initial=initial, **kwargs)
    own = set(current.fields) if current else set()
    carry = [(k, v) for k, v in (data.items() if data else []) if k in WIZARD_FIELDS
             and k not in own]
    titles = [s.title for s in WIZARD_STEPS[:2]] + [RESOURCE_STEPS[backend].title]
    version = _chosen_version(done)
    modelpack = version if version is not None and version.is_modelpack else None
    clusters = _cluster_choices(version) if target == 1 else []
    context = {
        "step": target, "steps": titles + ["Review manifest"], "backend": backend,
        "form": current, "carry": carry, "manifest": manifest,
        "clusters": clusters, "modelpack": modelpack,
        "modelpack_nowhere": modelpack is not None and bool(clusters)
        and not any(row["selectable"] for row in clusters),
        "no_versions": target == 0 and not current.fields["version"].queryset.exists(),
        "registry_problem": "" if registry_configured() else NOT_CONFIGURED,
    }
    return render_page_or_partial(request, "deployments/wizard.html",
                                  "deployments/partials/_wizard.html", context)


def _chosen_version(forms):
    """The version chosen on the first step, once it is valid."""
    return forms[0].cleaned_data["version"] if forms and forms[0].is_valid() else None


def _cluster_choices(version=None):
    """The cluster step's rows: a cluster is selectable inside the residency policy and, for a
    ModelPack artifact, only where its check found native OCI model support — the reason is
    shown beside any other."""
    rows = []
    for cluster in selectors.cluster_list():
        free = selectors.cluster_free_gpus(cluster)
        allowed = services.jurisdiction_allowed(cluster.jurisdiction)
        modelpack_problem = (selectors.cluster_modelpack_problem(cluster)
                             if version is not None and version.is_modelpack else None)
        rows.append({"cluster": cluster, "llm": cluster.llm_inference_service is True,
                     "allowed": allowed, "modelpack_problem": modelpack_problem,
                     "selectable": allowed and modelpack_problem is None,
                     "gpus": [(p, free[p], cluster.gpu_capacity[p])
                              for p in cluster.gpu_products]})
    return rows


# --- External endpoints -------------------------------------------------------------------

def _check_message(request: HttpRequest, deployment: Deployment, *, registered: bool) -> None:
    prefix = f"Registered {deployment.name}" if registered else f"Checked {deployment.name}"
    if deployment.status == DeploymentStatus.READY:
        messages.success(request, f"{prefix}: the health check passed — {deployment.base_url}"
                                  f"/models lists {deployment.served_model_name}.")
    else:
        messages.error(request, f"{prefix}, but the health check failed: "
                                f"{deployment.status_reason} Fix the server or the settings, "
                                "then press Check now.")


@platform_view(MANAGE)
def external_endpoint_register(request: HttpRequest) -> HttpResponse:
    """Register a model server running outside the clusters; its health is checked at once
    and the deployment page says how it went."""
    form = ExternalEndpointForm(request.POST or None)

    def registered(deployment: Deployment) -> HttpResponse:
        _check_message(request, deployment, registered=True)
        return redirect("deployments:detail", pk=deployment.pk)
    return form_page(request, form, lambda: services.external_endpoint_register(
        actor=request.user, **form.service_fields()),
        template="deployments/external_form.html", done=registered)


@platform_view(MANAGE)
def external_endpoint_edit(request: HttpRequest, pk: int) -> HttpResponse:
    deployment = selectors.external_endpoint_get(pk)
    has_key = bool(deployment.upstream_api_key_encrypted)
    form = ExternalEndpointEditForm(request.POST or None, has_key=has_key, initial={
        "base_url": deployment.base_url, "upstream_model": deployment.upstream_model,
        "name": deployment.name})
    if request.method == "POST" and form.is_valid():
        try:
            deployment = services.external_endpoint_update(
                actor=request.user, deployment=deployment, **form.service_fields())
        except ApplicationError as exc:
            add_service_errors(form, exc)
        else:
            _check_message(request, deployment, registered=False)
            return redirect("deployments:detail", pk=deployment.pk)
    return render(request, "deployments/external_edit.html",
                  {"form": form, "deployment": deployment,
                   "has_key": has_key})


@require_POST
@platform_view(MANAGE)
def deployment_check(request: HttpRequest, pk: int) -> HttpResponse:
    deployment = services.deployment_check(actor=request.user,
                                           deployment=selectors.external_endpoint_get(pk))
    _check_message(request, deployment, registered=False)
    return redirect("deployments:detail", pk=pk)


# --- Deployments --------------------------------------------------------------------------

@platform_view(MANAGE)
def deployment_list(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", "")
    context = {"deployments": selectors.deployment_list(status=status), "status": status,
               "statuses": DeploymentStatus.choices}
    return render_page_or_partial(request, "deployments/deployment_list.html",
                                  "deployments/partials/_deployment_table.html", context)


def _canary_diff(deployment: Deployment) -> str:
    if not deployment.canary_version_id or deployment.backend not in CLUSTER_BACKENDS:
        return ""
    stable = selectors.deployment_get(deployment.pk)  # a copy to take the canary off
    stable.canary_version, stable.canary_traffic_percent = None, None
    backend = backend_for(deployment)
    return manifest_diff(
        backend.manifest(stable), backend.manifest(deployment),
        before_label=f"{deployment.resource_name} (stable {deployment.version.version})",
        after_label=f"{deployment.resource_name} (with canary "
                    f"{deployment.canary_version.version})")


def _pending_diff(deployment: Deployment) -> str:
    """What applying the desired state would change on the cluster: the last applied
    manifest against the one the portal would apply now (empty when they agree)."""
    if deployment.backend not in CLUSTER_BACKENDS or not deployment.applied_manifest \
            or deployment.status in (DeploymentStatus.DELETING, DeploymentStatus.DELETED):
        return ""
    return manifest_diff(
        deployment.applied_manifest, backend_for(deployment).manifest(deployment),
        before_label=f"{deployment.resource_name} (applied)",
        after_label=f"{deployment.resource_name} (pending: "
                    f"{deployment.status_reason or 'change'})", sort_keys=True)


@platform_view(MANAGE)
def deployment_detail(request: HttpRequest, pk: int) -> HttpResponse:
    deployment = selectors.deployment_get(pk)
    context = {"deployment": deployment,
               "events": selectors.deployment_event_list(deployment=deployment)}
    if wants_partial(request):
        return render(request, "deployments/partials/_status.html", context)
    if deployment.backend in CLUSTER_BACKENDS and not registry_configured():
        # Its manifests name the registry: no diff, no download, and the page says why.
        context["registry_problem"] = NOT_CONFIGURED
    else:
        context.update(canary_diff=_canary_diff(deployment),
                       pending_diff=_pending_diff(deployment))
    scale_form = (LLMScaleForm(initial={
        "min_replicas": deployment.min_replicas, "max_replicas": deployment.max_replicas,
        "autoscaler": deployment.autoscaler, "prefill_replicas": deployment.prefill_replicas})
        if deployment.backend == Backend.LLMISVC else ScaleForm(initial={
            "min_replicas": deployment.min_replicas, "max_replicas": deployment.max_replicas,
            "scale_metric": deployment.scale_metric, "scale_target": deployment.scale_target}))
    context.update({
        "update_form": UpdateVersionForm(deployment=deployment),
        "scale_form": scale_form,
        "kind": backend_for(deployment).kind,
    })
    return render(request, "deployments/deployment_detail.html", context)


@platform_view(MANAGE)
def deployment_manifest(request: HttpRequest, pk: int) -> HttpResponse:
    deployment = selectors.deployment_get(pk)
    try:
        body = manifest_yaml(deployment)
    except RegistryNotConfigured as exc:
        return HttpResponse(exc.message, status=409, content_type="text/plain")
    if not body:
        return HttpResponse("An external endpoint has no manifest.", status=404,
                            content_type="text/plain")
    return HttpResponse(body, content_type="application/yaml", headers={
        "Content-Disposition": f'attachment; filename="{deployment.resource_name}.yaml"'})


def _act(request, pk: int, action) -> HttpResponse:
    deployment = selectors.deployment_get(pk)
    try:
        action(deployment)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("deployments:detail", pk=pk)


@require_POST
@platform_view(MANAGE)
def deployment_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    simple = {"retry": services.deployment_retry, "promote": services.deployment_promote,
              "rollback": services.deployment_rollback, "stop": services.deployment_stop,
              "start": services.deployment_start, "delete": services.deployment_delete}
    return _act(request, pk, lambda d: simple[action](actor=request.user, deployment=d))


@require_POST
@platform_view(MANAGE)
def deployment_update(request: HttpRequest, pk: int) -> HttpResponse:
    deployment = selectors.deployment_get(pk)
    form = UpdateVersionForm(request.POST, deployment=deployment)
    if not form.is_valid():
        messages.error(request, " ".join(e for errs in form.errors.values() for e in errs))
        return redirect("deployments:detail", pk=pk)
    return _act(request, pk, lambda d: services.deployment_update_version(
        actor=request.user, deployment=d, **form.cleaned_data))


@require_POST
@platform_view(MANAGE)
def deployment_update_preview(request: HttpRequest, pk: int) -> HttpResponse:
    """The manifest change a roll-out would make, before it is submitted (htmx partial)."""
    deployment = selectors.deployment_get(pk)
    form = UpdateVersionForm(request.POST, deployment=deployment)
    context = {"deployment": deployment, "diff": "", "problem": ""}
    if not form.is_valid():
        context["problem"] = " ".join(e for errs in form.errors.values() for e in errs)
    else:
        try:
            proposed = services.deployment_update_preview(deployment=deployment,
                                                          **form.cleaned_data)
            backend = backend_for(deployment)
            context["diff"] = manifest_diff(
                backend.manifest(deployment), backend.manifest(proposed),
                before_label=f"{deployment.resource_name} (now)",
                after_label=f"{deployment.resource_name} (after the roll-out)")
        except ApplicationError as exc:
            context["problem"] = exc.message
    return render(request, "deployments/partials/_update_preview.html", context)


@require_POST
@platform_view(MANAGE)
def deployment_scale(request: HttpRequest, pk: int) -> HttpResponse:
    deployment = selectors.deployment_get(pk)
    form = (LLMScaleForm if deployment.backend == Backend.LLMISVC else ScaleForm)(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(f"{k}: {e}" for k, errs in form.errors.items()
                                         for e in errs))
        return redirect("deployments:detail", pk=pk)
    return _act(request, pk, lambda d: services.deployment_scale(
        actor=request.user, deployment=d, **form.cleaned_data))


# --- LLMInferenceService presets ----------------------------------------------------------

@platform_view(MANAGE)
def llm_preset_list(request: HttpRequest) -> HttpResponse:
    return render(request, "deployments/llm_preset_list.html",
                  {"presets": selectors.llm_preset_list()})


@platform_view(MANAGE)
def llm_preset_create(request: HttpRequest) -> HttpResponse:
    form = LLMPresetForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            preset = services.llm_preset_create(actor=request.user, **form.service_fields())
        except ApplicationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Preset {preset.name} saved. Deployments that use it "
                                      "apply it to their namespace.")
            return redirect("deployments:llm_preset", pk=preset.pk)
    return render(request, "deployments/llm_preset_form.html", {"form": form})


@platform_view(MANAGE)
def llm_preset_detail(request: HttpRequest, pk: int) -> HttpResponse:
    from deployments.backends.llmisvc import preset_config

    preset = selectors.llm_preset_get(pk)
    return render(request, "deployments/llm_preset_detail.html", {
        "preset": preset, "deployments": selectors.llm_preset_deployments(preset),
        "config": to_yaml(preset_config(preset, "<deployment namespace>"))})


@platform_view(MANAGE)
def llm_preset_edit(request: HttpRequest, pk: int) -> HttpResponse:
    preset = selectors.llm_preset_get(pk)
    form = LLMPresetForm(request.POST or None, instance=preset)
    if request.method == "POST" and form.is_valid():
        fields = form.service_fields()
        fields.pop("name", None)
        try:
            preset = services.llm_preset_update(actor=request.user, preset=preset, **fields)
        except ApplicationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Saved {preset.name} (revision {preset.revision}); "
                                      f"{preset.in_use} deployment(s) use it.")
            return redirect("deployments:llm_preset", pk=preset.pk)
    return render(request, "deployments/llm_preset_form.html",
                  {"form": form, "preset": preset,
                   "in_use": selectors.llm_preset_deployments(preset)})


@platform_view(MANAGE)
def llm_preset_delete(request: HttpRequest, pk: int) -> HttpResponse:
    preset = selectors.llm_preset_get(pk)
    return _delete_page(
        request, lambda: services.llm_preset_delete(actor=request.user, preset=preset),
        template="deployments/llm_preset_delete.html",
        context=lambda: {"preset": preset,
                         "blocking": selectors.llm_preset_deployments(preset)},
        refused=reverse("deployments:llm_preset", kwargs={"pk": pk}),
        notice=f"Preset {preset.name} deleted.", done=reverse("deployments:llm_presets"))


# --- A tenant's view ----------------------------------------------------------------------

@require_GET
@tenant_view(TenantPerm.DEPLOYMENTS_VIEW)
def tenant_deployment_list(request: HttpRequest) -> HttpResponse:
    return render(request, "deployments/tenant_deployment_list.html", {
        "tenant": request.tenant,
        "dedicated": selectors.tenant_dedicated_deployments(tenant=request.tenant),
        "shared": selectors.tenant_shared_deployments(tenant=request.tenant),
    })
