from django import forms
from django.utils import timezone

from audit.reports.periods import PeriodError, ensure_over, parse_period
from tenants.selectors import tenant_by_slug


class ReportRequestForm(forms.Form):
    period = forms.CharField(
        max_length=40, help_text="2026-11 (month), 2026-W47 (ISO week), 2026-11-21 (day) or "
                                 "2026-11-01..2026-11-15 (days, both included). UTC.")
    tenant = forms.CharField(required=False, max_length=40,
                             help_text="Leave empty for the whole platform.")

    def clean_period(self):
        try:
            period = parse_period(self.cleaned_data["period"])
            ensure_over(period, now=timezone.now())
        except PeriodError as exc:
            raise forms.ValidationError(str(exc)) from None
        return period

    def clean_tenant(self):
        slug = self.cleaned_data.get("tenant", "").strip()
        if not slug:
            return None
        tenant = tenant_by_slug(slug)
        if tenant is None:
            raise forms.ValidationError(f"No tenant has the slug {slug!r}.")
        return tenant
