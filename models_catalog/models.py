from __future__ import annotations

from decimal import Decimal

from django.core.validators import MinValueValidator, RegexValidator
from django.db import models

from tenants.models import Tenant, slug_validator


class ModelTask(models.TextChoices):
    CHAT = "chat", "Chat"
    COMPLETION = "completion", "Completion"
    EMBEDDINGS = "embeddings", "Embeddings"


class ModelLifecycle(models.TextChoices):
    ACTIVE = "active", "Active"
    DEPRECATED = "deprecated", "Deprecated"  # serves with a warning; no new deployments
    RETIRED = "retired", "Retired"  # serves nothing


class Model(models.Model):
    """A model offered on the platform; what `model` names in an OpenAI-style request."""

    slug = models.SlugField(max_length=100, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=200)
    task = models.CharField(max_length=16, choices=ModelTask.choices)
    description = models.TextField(blank=True)
    provider = models.CharField("provider / family", max_length=100, blank=True)
    license = models.CharField(max_length=100, blank=True)
    context_length = models.PositiveIntegerField(null=True, blank=True)
    lifecycle = models.CharField(max_length=16, choices=ModelLifecycle.choices,
                                 default=ModelLifecycle.ACTIVE)
    available_to_all_tenants = models.BooleanField(
        default=True, help_text="Otherwise only the tenants listed as entitled may use it.")
    entitled_tenants = models.ManyToManyField(Tenant, blank=True, related_name="entitled_models")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.slug


currency_validator = RegexValidator(r"^[A-Z]{3}$", "Use a three-letter ISO 4217 code, e.g. EUR.")


class ModelPrice(models.Model):
    """Price per million tokens from `effective_from` on. Rows are never edited: a new price is
    a new row, so usage is always charged at the price in force when it was served."""

    model = models.ForeignKey(Model, on_delete=models.PROTECT, related_name="prices")
    input_per_million = models.DecimalField(max_digits=12, decimal_places=6,
                                            validators=[MinValueValidator(Decimal("0"))])
    output_per_million = models.DecimalField(max_digits=12, decimal_places=6,
                                             validators=[MinValueValidator(Decimal("0"))])
    currency = models.CharField(max_length=3, default="EUR", validators=[currency_validator])
    effective_from = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model", "-effective_from"]
        constraints = [
            models.UniqueConstraint(fields=["model", "effective_from"],
                                    name="one_price_per_model_and_instant"),
        ]

    def __str__(self) -> str:
        return f"{self.model}: {self.input_per_million}/{self.output_per_million} {self.currency}"
