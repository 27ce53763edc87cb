from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from gateway.models import ApiKey
from tenants.models import Tenant


def apikey_list(*, tenant: Tenant) -> QuerySet[ApiKey]:
    return (ApiKey.objects.for_tenant(tenant).select_related("owner")
            .prefetch_related("allowed_models").order_by("revoked_at", "-created_at", "-pk"))


def apikey_get(*, tenant: Tenant, pk: int) -> ApiKey:
    key = apikey_list(tenant=tenant).filter(pk=pk).first()
    if key is None:
        raise Http404("No such API key.")
    return key


def apikey_get_by_prefix(prefix: str) -> ApiKey | None:
    """The key with this prefix, its tenant and allowed models (two queries), for the
    gateway's key cache; None when no key has it."""
    return (ApiKey.objects.filter(prefix=prefix).select_related("tenant")
            .prefetch_related("allowed_models").first())
