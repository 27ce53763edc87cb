from __future__ import annotations

from decimal import Decimal

from django import forms

from billing.budgets.models import BudgetAction, BudgetPeriod, BudgetUnit
from billing.budgets.selectors import tenant_api_keys
from models_catalog.selectors import model_list_for_tenant
from portal.text import validate_display_name


class BudgetForm(forms.Form):
    name = forms.CharField(max_length=100, validators=[validate_display_name],
                           help_text="E.g. “Monthly spend” or “CI key tokens”.")
    api_key = forms.ModelChoiceField(queryset=None, required=False, label="API key",
                                     empty_label="All keys of the organisation")
    model = forms.ModelChoiceField(queryset=None, required=False, empty_label="All models")
    unit = forms.ChoiceField(choices=BudgetUnit.choices, label="Measured in")
    amount = forms.DecimalField(min_value=Decimal("0.01"), max_value=Decimal("1000000000"),
                                max_digits=16, decimal_places=2,
                                help_text="Money in the currency below, or a number of tokens.")
    currency = forms.CharField(max_length=3, required=False, initial="EUR",
                               help_text="For money budgets: usage priced in this currency.")
    period = forms.ChoiceField(choices=BudgetPeriod.choices)
    period_start = forms.DateField(required=False, label="First day",
                                   widget=forms.DateInput(attrs={"type": "date"}))
    period_end = forms.DateField(required=False, label="Last day",
                                 widget=forms.DateInput(attrs={"type": "date"}),
                                 help_text="Custom periods only (UTC days, inclusive).")
    thresholds = forms.CharField(initial="50, 80, 100", label="Alert at (%)",
                                 help_text="Comma-separated percentages between 1 and 100.")
    action = forms.ChoiceField(choices=BudgetAction.choices, label="At 100 %",
                               widget=forms.RadioSelect, initial=BudgetAction.NOTIFY)
    notify_email = forms.BooleanField(required=False, initial=True,
                                      label="E-mail the tenant admins at each threshold")

    # Two columns: the custom period's first and last day side by side.
    field_order = ["name", "api_key", "model", "unit", "amount", "currency", "period",
                   "thresholds", "period_start", "period_end", "action", "notify_email"]

    def __init__(self, *args, tenant, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["api_key"].queryset = tenant_api_keys(tenant)
        self.fields["model"].queryset = model_list_for_tenant(tenant=tenant)

    def clean_currency(self) -> str:
        return self.cleaned_data["currency"].strip().upper()

    def clean_thresholds(self) -> list[int]:
        raw = [part.strip().rstrip("%") for part in self.cleaned_data["thresholds"].split(",")]
        try:
            values = [int(part) for part in raw if part]
        except ValueError:
            raise forms.ValidationError("Use whole percentages, e.g. 50, 80, 100.") from None
        if not values or not all(1 <= v <= 100 for v in values):
            raise forms.ValidationError("Each threshold is a percentage between 1 and 100.")
        return sorted(set(values))

    @classmethod
    def initial_from(cls, budget) -> dict:
        return {"name": budget.name, "api_key": budget.api_key_id, "model": budget.model_id,
                "unit": budget.unit, "amount": budget.amount, "currency": budget.currency,
                "period": budget.period, "period_start": budget.period_start,
                "period_end": budget.period_end,
                "thresholds": ", ".join(str(t) for t in budget.thresholds),
                "action": budget.action, "notify_email": budget.notify_email}

    def service_values(self) -> dict:
        data = self.cleaned_data
        return {"name": data["name"],
                "api_key_id": data["api_key"].pk if data["api_key"] else None,
                "model": data["model"], "unit": data["unit"], "amount": data["amount"],
                "currency": data["currency"], "period": data["period"],
                "period_start": data["period_start"], "period_end": data["period_end"],
                "thresholds": data["thresholds"], "action": data["action"],
                "notify_email": data["notify_email"]}
