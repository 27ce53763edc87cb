from django import forms
from django.core.exceptions import ValidationError

from portal.api import ApplicationError


def add_service_errors(form: forms.Form, exc: ValidationError | ApplicationError) -> None:
    """Show a service's refusal on the form: on the named fields where possible."""
    if isinstance(exc, ApplicationError):
        for field, messages in exc.field_errors.items():
            form.add_error(field if field in form.fields else None, messages)
        if not exc.field_errors:
            form.add_error(None, exc.message)
        return
    if hasattr(exc, "error_dict"):
        for field, errors in exc.error_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, exc)


def service_error_message(exc: ValidationError | ApplicationError) -> str:
    """One sentence for a refusal shown outside a form (a flash message, a partial)."""
    if isinstance(exc, ApplicationError):
        return exc.message
    return " ".join(exc.messages)
