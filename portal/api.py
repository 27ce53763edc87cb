"""Shared pieces of the REST API: the one error type services raise and its handler, and the
one pagination every list answers with."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param
from rest_framework.views import exception_handler as drf_exception_handler


class ApplicationError(DjangoValidationError):
    """A business rule said no: the one refusal a service raises. `message` is one sentence
    for a flash message or the API's `detail`; `field_errors` maps field names to messages, if
    any apply (`__all__` for the whole input).

    It is a Django `ValidationError` (with the same `messages` and `message_dict`), so Django
    forms and admin actions show it as they show any invalid input; views catch
    `ApplicationError` only, and the API answers it 400 (`exception_handler`)."""

    def __init__(self, message: str, *, field_errors: dict[str, list[str]] | None = None):
        self.field_errors = {
            field: [messages] if isinstance(messages, str) else [str(m) for m in messages]
            for field, messages in (field_errors or {}).items()}
        super().__init__(self.field_errors or message)
        self.message = message
        self.args = (message,)  # pickles (Celery results) as `ApplicationError(message)`

    def __str__(self) -> str:
        return self.message


def _django_validation_errors(exc: DjangoValidationError) -> dict[str, list[str]]:
    if hasattr(exc, "error_dict"):
        return {field: [m for e in errors for m in e.messages] for field, errors in
                exc.error_dict.items()}
    return {"non_field_errors": exc.messages}


def refusal(errors: str | list[str] | dict[str, str | list[str]]) -> ApplicationError:
    """The `ApplicationError` for a message, or for messages per field (`{"field": "…"}`,
    `"__all__"` for the whole input): `raise refusal({"name": "Taken."})`."""
    return refusal_from(DjangoValidationError(errors))


def refusal_from(exc: DjangoValidationError) -> ApplicationError:
    """What a model validator (or a Django form field's `clean`) refused, as the refusal a
    service raises: the same messages, on the same fields."""
    return ApplicationError(" ".join(exc.messages), field_errors=(
        _django_validation_errors(exc) if hasattr(exc, "error_dict") else None))


def full_clean_or_refuse(instance, *, exclude: list[str] | None = None) -> None:
    """`instance.full_clean()` for a service: what the model's validators refuse becomes an
    `ApplicationError` whose field errors name the same fields, so forms show each message on
    its field and the API answers 400 with them. (`__all__` holds the whole-row errors.)"""
    try:
        instance.full_clean(exclude=exclude)
    except DjangoValidationError as exc:
        raise ApplicationError(" ".join(exc.messages),
                               field_errors=_django_validation_errors(exc)) from None


def _messages(errors, where: str = "") -> list[str]:
    """A field's errors as one list of messages. DRF nests a list or map field's errors by
    index or key; those messages say which item they are about: `[0] …`, `[name] …`."""
    if isinstance(errors, str):
        return [f"{where} {errors}" if where else str(errors)]
    items = errors.items() if isinstance(errors, dict) else enumerate(errors)
    if not isinstance(errors, dict) and all(isinstance(item, str) for item in errors):
        return [f"{where} {item}" if where else str(item) for item in errors]
    return [message for key, item in items for message in _messages(item, f"{where}[{key}]")]


def exception_handler(exc, context):
    if isinstance(exc, ApplicationError):
        # Like invalid input: `errors` always, the whole-input refusal under non_field_errors.
        return Response({"detail": exc.message,
                         "errors": exc.field_errors or {"non_field_errors": [exc.message]}},
                        status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(_django_validation_errors(exc))
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, exceptions.ValidationError):
        errors = response.data
        if isinstance(errors, list):
            errors = {"non_field_errors": errors}
        response.data = {"detail": "The request has invalid fields.",
                         "errors": {field: _messages(value) for field, value in errors.items()}}
    return response


class PortalPagination(LimitOffsetPagination):
    """Every list of the API: `?limit=&offset=`. The body stays the list itself (a JSON array,
    as it was before lists paginated, so clients that read the array keep working); where the
    page sits is in the headers, as GitHub's and GitLab's APIs do it:

    - `X-Total-Count`: how many items the whole list holds;
    - `Link`: RFC 8288 links to the `next`, `prev`, `first` and `last` pages (those that
      exist). Follow `rel="next"` until it is absent.

    `limit` defaults to 50 and is capped at 500 (a bigger one is read as 500); a limit or
    offset that is not a number is ignored."""

    default_limit = 50
    max_limit = 500

    def get_paginated_response(self, data) -> Response:
        links = [(url, rel) for url, rel in (
            (self.get_next_link(), "next"), (self.get_previous_link(), "prev"),
            (self._page_link(0), "first"), (self._page_link(self._last_offset()), "last"),
        ) if url]  # first and last always exist
        return Response(data, headers={
            "X-Total-Count": str(self.count),
            "Link": ", ".join(f'<{url}>; rel="{rel}"' for url, rel in links)})

    def _last_offset(self) -> int:
        return max(0, (self.count - 1) // self.limit * self.limit) if self.count else 0

    def _page_link(self, offset: int) -> str:
        url = self.request.build_absolute_uri()
        url = replace_query_param(url, self.limit_query_param, self.limit)
        return replace_query_param(url, self.offset_query_param, offset)

    def get_paginated_response_schema(self, schema: dict) -> dict:
        return schema  # the array itself; the headers are documented by PortalAutoSchema

    def get_schema_operation_parameters(self, view):
        limit, offset = super().get_schema_operation_parameters(view)
        limit["description"] = (f"How many results a page holds (default {self.default_limit}, "
                                f"at most {self.max_limit}).")
        limit["schema"] = {**limit["schema"], "minimum": 1, "maximum": self.max_limit}
        offset["description"] = "How many results to skip (0 for the first page)."
        offset["schema"] = {**offset["schema"], "minimum": 0}
        return [limit, offset]


PAGE_HEADERS = {
    "X-Total-Count": {"description": "How many items the whole list holds.",
                      "schema": {"type": "integer", "minimum": 0}},
    "Link": {"description": 'RFC 8288 links to the other pages: `<url>; rel="next"`, '
                            '`rel="prev"`, `rel="first"`, `rel="last"` (those that exist). '
                            'Follow `rel="next"` until it is absent.',
             "schema": {"type": "string"}},
}
