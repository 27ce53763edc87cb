from __future__ import annotations

from django import forms

from portal.text import validate_display_name


class WebhookForm(forms.Form):
    name = forms.CharField(max_length=100, validators=[validate_display_name],
                           help_text="E.g. “Finance alerts”.")
    url = forms.URLField(max_length=500, label="URL", assume_scheme="https",
                         help_text="Receives a signed JSON POST at every budget alert.")
