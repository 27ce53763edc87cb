from django import forms

from portal.api import ApplicationError


def add_service_errors(form: forms.Form, exc: ApplicationError) -> None:
    """Show a service's refusal on the form: on the named fields where possible."""
    for field, messages in exc.field_errors.items():
        form.add_error(field if field in form.fields else None, messages)
    if not exc.field_errors:
        form.add_error(None, exc.message)
