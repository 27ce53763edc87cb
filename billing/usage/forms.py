from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from django import forms
from django.utils import timezone

from billing.usage.models import Granularity
from portal.dates import validate_supported_date

RANGES = [("1", "Last 24 hours"), ("7", "Last 7 days"), ("30", "Last 30 days"),
          ("90", "Last 90 days"), ("custom", "Custom")]
MAX_HOURLY_DAYS = 31
MAX_DAYS = 731


class UsageRangeForm(forms.Form):
    """The dashboards' range and granularity (GET). Unbound, it means the last 7 days."""

    range = forms.ChoiceField(choices=RANGES, initial="7", required=False)
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}),
                            validators=[validate_supported_date], help_text="First day (UTC)")
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}),
                            validators=[validate_supported_date],
                            help_text="Last day (UTC), included")
    granularity = forms.ChoiceField(choices=Granularity.choices, initial=Granularity.DAY,
                                    required=False)

    def clean(self):
        data = super().clean()
        choice = data.get("range") or "7"
        granularity = data.get("granularity") or (Granularity.HOUR if choice == "1"
                                                  else Granularity.DAY)
        now = timezone.now()
        if choice == "custom":
            since, until = data.get("since"), data.get("until")
            if not since or not until:
                raise forms.ValidationError("Choose the first and last day of a custom range.")
            if since > until:
                self.add_error("until", "The last day can't be before the first.")
                return data
            start = datetime.combine(since, time(), tzinfo=UTC)
            end = datetime.combine(until + timedelta(days=1), time(), tzinfo=UTC)
        else:
            end = (now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
                   if granularity == Granularity.HOUR
                   else now.replace(hour=0, minute=0, second=0, microsecond=0)
                   + timedelta(days=1))
            start = end - timedelta(days=int(choice))
        days = (end - start).days
        if days > MAX_DAYS:
            raise forms.ValidationError(f"Choose at most {MAX_DAYS} days.")
        if granularity == Granularity.HOUR and days > MAX_HOURLY_DAYS:
            self.add_error("granularity", f"Hourly figures cover at most {MAX_HOURLY_DAYS} "
                                          "days; choose daily, or a shorter range.")
        data.update(range=choice, granularity=granularity, start=start, end=end)
        return data
