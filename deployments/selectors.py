from __future__ import annotations

from django.db.models import Q, QuerySet

from deployments.models import Deployment, DeploymentStatus
from models_catalog.models import Model
from models_catalog.selectors import model_list_for_tenant
from tenants.models import Tenant


def served_models_for_tenant(*, tenant: Tenant, task: str | None = None) -> QuerySet[Model]:
    """Entitled models with at least one ready deployment this tenant may use."""
    ready = Deployment.objects.filter(status=DeploymentStatus.READY).filter(
        Q(tenant__isnull=True) | Q(tenant=tenant))
    models = model_list_for_tenant(tenant=tenant).filter(
        pk__in=ready.values("model_id"))
    return models.filter(task=task) if task else models


