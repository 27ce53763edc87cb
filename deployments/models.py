from __future__ import annotations

from django.db import models

from models_catalog.models import Model
from tenants.models import Tenant, User


class Backend(models.TextChoices):
    EXTERNAL = "external", "External OpenAI-compatible endpoint"


class DeploymentStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"
    STOPPED = "stopped", "Stopped"


class Deployment(models.Model):
    """Somewhere a catalog model is served; the gateway's upstream.

    Shared deployments (no tenant) serve every entitled tenant; dedicated ones only their
    tenant. The upstream API key is stored encrypted (portal.crypto).
    """

    model = models.ForeignKey(Model, on_delete=models.PROTECT, related_name="deployments")
    tenant = models.ForeignKey(Tenant, null=True, blank=True, on_delete=models.PROTECT,
                               related_name="dedicated_deployments",
                               help_text="Empty for a shared deployment.")
    name = models.CharField(max_length=100)
    backend = models.CharField(max_length=16, choices=Backend.choices)
    base_url = models.URLField("upstream base URL", max_length=500,
                               help_text="The OpenAI-compatible base URL, e.g. http://host:8000/v1")
    upstream_model = models.CharField(max_length=200, blank=True,
                                      help_text="Model name the upstream expects; defaults to "
                                                "the catalog slug.")
    upstream_api_key_encrypted = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=DeploymentStatus.choices,
                              default=DeploymentStatus.PENDING)
    status_reason = models.CharField(max_length=500, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model__slug", "name"]

    def __str__(self) -> str:
        return f"{self.model.slug} @ {self.name}"

    @property
    def served_model_name(self) -> str:
        return self.upstream_model or self.model.slug
