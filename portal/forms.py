from collections.abc import Callable
from typing import TypeVar

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from portal.api import ApplicationError

T = TypeVar("T")


def add_service_errors(form: forms.Form, exc: ApplicationError) -> None:
    """Show a service's refusal on the form: on the named fields where possible."""
    for field, messages in exc.field_errors.items():
        form.add_error(field if field in form.fields else None, messages)
    if not exc.field_errors:
        form.add_error(None, exc.message)


def submit(form: forms.Form, call: Callable[[], T]) -> T | None:
    """What the service `call()` returns, run once `form` is valid; None when the form is
    invalid or the service refuses (its refusal is then on the form, `add_service_errors`)."""
    if not form.is_valid():
        return None
    try:
        return call()
    except ApplicationError as exc:
        add_service_errors(form, exc)
        return None


def form_page(request: HttpRequest, form: forms.Form, call: Callable[[], T], *, template: str,
              done: Callable[[T], HttpResponse], context: dict | None = None) -> HttpResponse:
    """A page with one form: a POST runs the service `call()` (see `submit`) and answers
    `done(<what it returned>)`; a GET, an invalid form or a refusal shows `template` with the
    form (and its errors) and `context`."""
    if request.method == "POST":
        result = submit(form, call)
        if result is not None:
            return done(result)
    return render(request, template, {"form": form, **(context or {})})


def submit_edit(form: forms.ModelForm, call: Callable[[], T]) -> T | None:
    """`submit` for a ModelForm that edits a stored object. `is_valid()` already copied the
    posted values onto `form.instance`: it is reloaded before `call()`, so the service sees
    the stored state and records what really changed."""

    def reload_then_call() -> T:
        form.instance.refresh_from_db()
        return call()

    return submit(form, reload_then_call)
