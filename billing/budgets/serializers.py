from __future__ import annotations

from decimal import Decimal

from rest_framework import serializers

from billing.budgets.models import BudgetAction, BudgetPeriod, BudgetUnit
from portal.text import validate_display_name


class BudgetInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, validators=[validate_display_name])
    api_key_id = serializers.IntegerField(required=False, allow_null=True, default=None)
    model = serializers.CharField(required=False, allow_null=True, default=None,
                                  help_text="A model slug; empty for every model.")
    unit = serializers.ChoiceField(choices=BudgetUnit.choices, default=BudgetUnit.CURRENCY)
    amount = serializers.DecimalField(max_digits=16, decimal_places=2,
                                      min_value=Decimal("0.01"),
                                      max_value=Decimal("1000000000"))
    currency = serializers.CharField(max_length=3, required=False, allow_blank=True,
                                     default="")
    period = serializers.ChoiceField(choices=BudgetPeriod.choices, default=BudgetPeriod.MONTHLY)
    period_start = serializers.DateField(required=False, allow_null=True, default=None)
    period_end = serializers.DateField(required=False, allow_null=True, default=None)
    thresholds = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=100),
                                       min_length=1, max_length=20, default=[50, 80, 100])
    action = serializers.ChoiceField(choices=BudgetAction.choices, default=BudgetAction.NOTIFY)
    notify_email = serializers.BooleanField(default=True)


class BudgetOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="budget.pk")
    name = serializers.CharField(source="budget.name")
    api_key_id = serializers.IntegerField(source="budget.api_key_id", allow_null=True)
    model = serializers.SerializerMethodField()
    unit = serializers.CharField(source="budget.unit")
    amount = serializers.DecimalField(source="budget.amount", max_digits=16, decimal_places=2)
    currency = serializers.CharField(source="budget.currency")
    period = serializers.CharField(source="budget.period")
    period_start = serializers.DateField(allow_null=True)
    period_end = serializers.DateField(allow_null=True)
    thresholds = serializers.ListField(source="budget.thresholds",
                                       child=serializers.IntegerField())
    action = serializers.CharField(source="budget.action")
    notify_email = serializers.BooleanField(source="budget.notify_email")
    consumed = serializers.DecimalField(max_digits=24, decimal_places=8)
    percent = serializers.FloatField()
    blocked = serializers.BooleanField()

    def get_model(self, row) -> str | None:
        budget = row["budget"]
        return budget.model.slug if budget.model_id else None


class BudgetAlertSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    budget_id = serializers.IntegerField()
    budget_name = serializers.CharField(source="budget.name")
    period_start = serializers.DateField()
    threshold = serializers.IntegerField()
    consumed = serializers.DecimalField(max_digits=24, decimal_places=8)
    limit = serializers.DecimalField(max_digits=16, decimal_places=2)
    blocked = serializers.BooleanField()
    created_at = serializers.DateTimeField()
