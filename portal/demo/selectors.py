from __future__ import annotations

from django.conf import settings

from deployments.models import Backend, Deployment, DeploymentStatus
from portal.demo.models import DemoModelState


def demo_state() -> DemoModelState | None:
    """The demo model's preparation, in DEBUG only (None in production, whatever the table
    holds)."""
    if not settings.DEBUG:
        return None
    return DemoModelState.objects.filter(name="demo-model").first()


def demo_deployment(model) -> Deployment | None:
    """The demo model's shared external endpoint, if one is registered."""
    return (Deployment.objects.filter(model=model, backend=Backend.EXTERNAL, tenant=None)
            .exclude(status=DeploymentStatus.DELETED).first())
