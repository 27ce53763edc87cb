from __future__ import annotations

from datetime import datetime

from django.db.models import Count, Prefetch, Q, QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404

from models_catalog.models import Model, ModelLifecycle, ModelPrice, ModelVersion, VersionStatus
from tenants.models import Tenant


def model_list_for_tenant(*, tenant: Tenant) -> QuerySet[Model]:
    """Models the tenant is entitled to and that still serve."""
    return (Model.objects.exclude(lifecycle=ModelLifecycle.RETIRED)
            .filter(Q(available_to_all_tenants=True) | Q(entitled_tenants=tenant))
            .distinct().order_by("name"))


def price_in_force(*, model_id: int, at: datetime) -> ModelPrice | None:
    return (ModelPrice.objects.filter(model_id=model_id, effective_from__lte=at)
            .order_by("-effective_from").first())


PUBLIC_VERSION_STATUSES = (VersionStatus.PUBLISHED, VersionStatus.DEPRECATED)


def _sees_everything(user) -> bool:
    from tenants.permissions import PlatformPerm, has_platform_perm

    return has_platform_perm(user, PlatformPerm.MODELS_VIEW)


def model_search(queryset: QuerySet[Model], *, q: str = "", task: str = "",
                 lifecycle: str = "") -> QuerySet[Model]:
    if q:
        queryset = queryset.filter(Q(name__icontains=q) | Q(slug__icontains=q)
                                   | Q(provider__icontains=q) | Q(description__icontains=q))
    if task:
        queryset = queryset.filter(task=task)
    if lifecycle:
        queryset = queryset.filter(lifecycle=lifecycle)
    return queryset


def model_list_for_user(*, user, tenant: Tenant | None, q: str = "", task: str = "",
                        lifecycle: str = "") -> QuerySet[Model]:
    """MSP admins see every model; everyone else the models entitled to `tenant`."""
    if _sees_everything(user):
        queryset = Model.objects.all()
    elif tenant is None:
        return Model.objects.none()
    else:
        queryset = model_list_for_tenant(tenant=tenant)
    queryset = queryset.annotate(
        version_count=Count("versions", filter=Q(versions__status__in=PUBLIC_VERSION_STATUSES),
                            distinct=True),
        pending_count=Count("versions", filter=Q(versions__status__in=(
            VersionStatus.UPLOADING, VersionStatus.QUARANTINED, VersionStatus.SCANNING,
            VersionStatus.AWAITING_APPROVAL)), distinct=True))
    return model_search(queryset, q=q, task=task, lifecycle=lifecycle).order_by("name")


def model_get_for_user(*, user, tenant: Tenant | None, slug: str) -> Model:
    """The model, or Http404 when it doesn't exist or isn't entitled to `tenant`."""
    if _sees_everything(user):
        queryset = Model.objects.all()
    elif tenant is None:
        raise Http404("No such model.")
    else:
        queryset = model_list_for_tenant(tenant=tenant)
    return get_object_or_404(queryset.prefetch_related("entitled_tenants"), slug=slug)


def version_list_for_user(*, user, model: Model) -> QuerySet[ModelVersion]:
    queryset = model.versions.select_related("uploaded_by", "approved_by", "submitted_by")
    if not _sees_everything(user):
        queryset = queryset.filter(status__in=PUBLIC_VERSION_STATUSES)
    return queryset.order_by("-created_at")


def version_get_for_user(*, user, model: Model, version: str) -> ModelVersion:
    return get_object_or_404(
        version_list_for_user(user=user, model=model).select_related("model", "upload"),
        version=version)


def versions_awaiting_approval() -> QuerySet[ModelVersion]:
    return (ModelVersion.objects.filter(status=VersionStatus.AWAITING_APPROVAL,
                                        submitted_at__isnull=False)
            .select_related("model", "uploaded_by", "submitted_by").order_by("submitted_at"))


def versions_in_progress() -> QuerySet[ModelVersion]:
    return (ModelVersion.objects.filter(status__in=(
        VersionStatus.UPLOADING, VersionStatus.QUARANTINED, VersionStatus.SCANNING,
        VersionStatus.AWAITING_APPROVAL)).select_related("model", "uploaded_by")
        .order_by("-updated_at"))


def price_list(*, model: Model) -> QuerySet[ModelPrice]:
    return model.prices.order_by("-effective_from")


def model_list_for_gateway() -> QuerySet[Model]:
    """Every model with what the gateway routes by (slug, task, lifecycle, who may use it):
    two queries, the entitled tenants' ids prefetched."""
    return (Model.objects.only("pk", "slug", "task", "lifecycle", "available_to_all_tenants",
                               "created_at", "provider")
            .prefetch_related(Prefetch("entitled_tenants", queryset=Tenant.objects.only("pk"))))


def versions_in_period(*, start: datetime, end: datetime) -> QuerySet[ModelVersion]:
    """Versions created, scanned or approved in [start, end), for compliance reports."""
    return (ModelVersion.objects.filter(
        Q(created_at__gte=start, created_at__lt=end) | Q(scanned_at__gte=start, scanned_at__lt=end)
        | Q(approved_at__gte=start, approved_at__lt=end))
        .select_related("model", "uploaded_by", "approved_by").order_by("created_at"))


def model_get_for_tenant(*, tenant: Tenant, slug: str) -> Model:
    """An entitled model, or Http404 — for tenants, an unentitled model does not exist."""
    return get_object_or_404(model_list_for_tenant(tenant=tenant), slug=slug)


def version_list_public(*, model: Model) -> QuerySet[ModelVersion]:
    """What tenants see of a model: its published and deprecated versions."""
    return (model.versions.filter(status__in=PUBLIC_VERSION_STATUSES)
            .select_related("model").order_by("-created_at"))


def model_tokenizer_json(*, model_id: int) -> str | None:
    """tokenizer.json of the model's newest serving version that has one (the gateway counts
    tokens with it when a model server reports no usage)."""
    return (ModelVersion.objects.filter(
        model_id=model_id, status__in=(VersionStatus.PUBLISHED, VersionStatus.DEPRECATED))
        .exclude(tokenizer="").order_by("-approved_at", "-created_at")
        .values_list("tokenizer", flat=True).first())
