from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Prefetch, Q, QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404

from models_catalog.models import (
    DEPLOYABLE_STATUSES,
    AnnexXIIInformation,
    Model,
    ModelLifecycle,
    ModelPrice,
    ModelVersion,
    SignatureCheck,
    UploadSession,
    VersionStatus,
)
from models_catalog.provenance import (  # noqa: F401  (what other apps plug into queries)
    Downstream,
    register_downstream,
)
from models_catalog.registry import (  # noqa: F401  (the registry settings other apps read)
    NOT_CONFIGURED,
    RegistryNotConfigured,
    registry_configured,
    registry_host,
)
from models_catalog.signing import version_verify
from tenants.models import Tenant


def model_list_for_tenant(*, tenant: Tenant) -> QuerySet[Model]:
    """Models the tenant is entitled to and that still serve."""
    return (Model.objects.exclude(lifecycle=ModelLifecycle.RETIRED)
            .filter(Q(available_to_all_tenants=True) | Q(entitled_tenants=tenant))
            .distinct().order_by("name"))


def prices_in_force(*, model_ids: Iterable[int]) -> Callable[[int, datetime],
                                                               ModelPrice | None]:
    """`price_at(model_id, when)`: the price in force for a model when a request was served
    (the newest that started at or before it; None before the first). The prices of
    `model_ids` are loaded once, so a batch of usage is priced with one query."""
    prices: dict[int, list[ModelPrice]] = defaultdict(list)
    for price in ModelPrice.objects.filter(model_id__in=set(model_ids)).order_by(
            "effective_from"):
        prices[price.model_id].append(price)
    starts = {model_id: [p.effective_from for p in rows] for model_id, rows in prices.items()}

    def price_at(model_id: int, when: datetime) -> ModelPrice | None:
        index = bisect_right(starts.get(model_id, ()), when)
        return prices[model_id][index - 1] if index else None

    return price_at


PUBLIC_VERSION_STATUSES = (VersionStatus.PUBLISHED, VersionStatus.DEPRECATED)


def annex_xii_get(*, model: Model) -> AnnexXIIInformation:
    """The model's Annex XII information; an empty, unsaved one when none was given yet."""
    found = AnnexXIIInformation.objects.filter(model=model).first()
    return found or AnnexXIIInformation(model=model)


def annex_xii_document(model: Model) -> dict:
    """The EU AI Act Annex XII information of a model, as the API, the evidence bundle and
    deployers read it. Licence and context window come from the model itself."""
    info = annex_xii_get(model=model)
    return {
        "model": model.slug,
        "name": model.name,
        "provider": model.provider,
        "intended_tasks": info.intended_tasks,
        "acceptable_use": info.acceptable_use,
        "architecture": info.architecture,
        "parameter_count": info.parameter_count,
        "training_approach": info.training_approach,
        "input_modalities": info.input_modalities,
        "output_modalities": info.output_modalities,
        "license": model.license,
        "context_window": model.context_length,
        "training_data_summary": info.training_data_summary,
        "limitations": info.limitations,
        "training_energy_kwh": (str(info.training_energy_kwh)
                                if info.training_energy_kwh is not None else None),
        "updated_at": info.updated_at.isoformat() if info.pk else None,
    }


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
        version_list_for_user(user=user, model=model)
        .select_related("model", "upload", "base_version__model")
        .prefetch_related("files", "datasets"), version=version)


def versions_derived_from(*, version: ModelVersion) -> QuerySet[ModelVersion]:
    """The versions that name `version` as their base (one step; provenance goes further)."""
    return version.derived_versions.select_related("model").order_by("model__slug", "version")


def model_find_for_user(*, user, slug: str) -> Model | None:
    """The model with `slug` among those `user` sees on the MSP side, or None."""
    return model_list_for_user(user=user, tenant=None).filter(slug=slug).first()


def version_find(*, model_slug: str, version: str) -> ModelVersion | None:
    """Any version by model slug and label (for commands: no user, no entitlement)."""
    return (ModelVersion.objects.select_related("model")
            .filter(model__slug=model_slug, version=version).first())


def upload_session_get(*, pk) -> UploadSession:
    return get_object_or_404(UploadSession.objects.select_related("version__model"), pk=pk)


def tenants_with_slugs(*, slugs: Iterable[str]) -> list[Tenant]:
    """The tenants an entitlement names (unknown slugs are simply not in the list)."""
    return list(Tenant.objects.filter(slug__in=set(slugs)).order_by("slug"))


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
    """Every model with what the gateway routes by (slug, task, lifecycle and its dates and
    successor, who may use it): two queries, the entitled tenants' ids prefetched."""
    return (Model.objects.select_related("successor")
            .only("pk", "slug", "task", "lifecycle", "available_to_all_tenants", "created_at",
                  "provider", "deprecated_at", "sunset_at", "successor__slug")
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


def version_get_public(*, model: Model, version: str) -> ModelVersion:
    return get_object_or_404(version_list_public(model=model), version=version)


@dataclass(frozen=True)
class SignatureState:
    """What pages say about a version's signature."""

    verified: bool
    detail: str
    # When the recorded check ran; None when the version was checked just now because no
    # check was recorded since it last changed.
    checked_at: datetime | None


def signature_state(version: ModelVersion) -> SignatureState | None:
    """The recorded check of the version's signature (on publication, before each deploy, or
    "verify now"), while nothing changed the version since. A version changed since, or never
    checked, is checked now — and nothing is recorded: a read changes nothing. None when the
    version is not signed."""
    if not version.signature:
        return None
    if version.signature_check_current:
        return SignatureState(version.signature_status == SignatureCheck.VERIFIED,
                              version.signature_detail, version.signature_checked_at)
    check = version_verify(version)
    return SignatureState(check.ok, check.reason, None)


def with_signature_states(versions: Iterable[ModelVersion]) -> list[ModelVersion]:
    """The versions, each with its `signature_state` for the page."""
    versions = list(versions)
    for version in versions:
        version.signature_state = signature_state(version)
    return versions


def versions_deployable(*, model: Model | None = None) -> QuerySet[ModelVersion]:
    """Published versions of models that still serve, whose signature verifies (see
    `signature_state`); the one chosen is checked for real again before it is deployed."""
    queryset = (ModelVersion.objects.filter(status__in=DEPLOYABLE_STATUSES)
                .exclude(model__lifecycle=ModelLifecycle.RETIRED).select_related("model"))
    if model is not None:
        queryset = queryset.filter(model=model)
    return queryset.filter(pk__in=[v.pk for v in queryset
                                   if (state := signature_state(v)) and state.verified])


def _serving_tokenizers(model_id: int) -> QuerySet[ModelVersion]:
    return (ModelVersion.objects.filter(
        model_id=model_id, status__in=(VersionStatus.PUBLISHED, VersionStatus.DEPRECATED))
        .exclude(tokenizer="").order_by("-approved_at", "-created_at"))


def model_tokenizer_json(*, model_id: int) -> str | None:
    """The tokenizer document of the model's newest serving version that has one (a
    tokenizer.json, or the vocabulary of its GGUF): the gateway counts tokens with it when a
    model server reports no usage."""
    return _serving_tokenizers(model_id).values_list("tokenizer", flat=True).first()


def model_tokenizer_version(*, model_id: int) -> int | None:
    """Id of the version whose tokenizer `model_tokenizer_json` returns (a cheap check whether
    the gateway's loaded tokenizer is still the current one)."""
    return _serving_tokenizers(model_id).values_list("pk", flat=True).first()
