"""The one definition of audit-event filters, used by the explorer pages, exports and API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django import forms

from portal.dates import validate_supported_date


@dataclass(frozen=True)
class EventFilter:
    tenant_id: int | None = None
    action: str = ""
    actor: str = ""
    target_type: str = ""
    target_id: str = ""
    search: str = ""
    since: datetime | None = None
    until: datetime | None = None


class EventFilterForm(forms.Form):
    """Query parameters → `EventFilter`. Bad values are form errors, never a 500."""

    since = forms.DateTimeField(required=False, label="From (UTC)",
                                validators=[validate_supported_date])
    until = forms.DateTimeField(required=False, label="Until (UTC)",
                                validators=[validate_supported_date])
    tenant = forms.SlugField(required=False, max_length=40)
    actor = forms.CharField(required=False, max_length=254,
                            help_text="Exact e-mail or system label")
    action = forms.CharField(required=False, max_length=100,
                             help_text="Exact, or a prefix ending in '.' such as tenant.")
    target = forms.CharField(required=False, max_length=140,
                             help_text="type or type:id, e.g. tenants.tenant:3")
    q = forms.CharField(required=False, max_length=200, label="Search in details")
    before = forms.IntegerField(required=False, min_value=1)
    after = forms.IntegerField(required=False, min_value=0)

    def clean(self):
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and since >= until:
            self.add_error("until", "'Until' must be after 'From'.")
        return data

    def event_filter(self, *, tenant_id: int | None) -> EventFilter:
        """The validated filter; `tenant_id` is resolved (or forced) by the caller."""
        data = self.cleaned_data
        target_type, _, target_id = (data.get("target") or "").strip().partition(":")
        return EventFilter(
            tenant_id=tenant_id,
            action=(data.get("action") or "").strip(),
            actor=(data.get("actor") or "").strip().lower(),
            target_type=target_type.strip(),
            target_id=target_id.strip(),
            search=(data.get("q") or "").strip(),
            since=data.get("since"),
            until=data.get("until"),
        )
