"""The OpenAPI schema documents the errors the API answers, not only its successes.

Every operation can answer 400 (invalid input or a business rule said no, from
`portal.api.exception_handler`), 401 (no or a bad credential) and 403 (not allowed); an
operation on one object also 404 (missing, or another tenant's). All four have the same body:
`{"detail": …}`, and for invalid fields `"errors": {field: [messages]}`. Operations that answer
something more (409 for an upload chunk at the wrong offset) say so with `extend_schema`.

A paginated list documents its page headers (`X-Total-Count`, `Link`) on its 2xx answer.
"""

from __future__ import annotations

import inspect

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

from portal.api import PAGE_HEADERS, PortalPagination

ApiErrorSerializer = inline_serializer(
    name="ApiError",
    fields={
        "detail": serializers.CharField(help_text="What went wrong and what to do."),
        "errors": serializers.DictField(
            child=serializers.ListField(child=serializers.CharField()), required=False,
            help_text="Messages per invalid field (`non_field_errors` for the whole input)."),
    },
)

_ERRORS = {
    "400": "Invalid input, or a rule of the platform refused it (`detail` says which).",
    "401": "Not signed in, or the bearer token was refused (`detail` says why).",
    "403": "Signed in, but not allowed to do this.",
    "404": "No such object (or one you can't see).",
}


class PortalAutoSchema(AutoSchema):
    def get_description(self) -> str:
        """The handler's docstring, else the view's own or an app base's (`_ManageApi`) —
        never the text of the framework's base views, which speaks to developers."""
        handler = getattr(self.view, self.method.lower(), None)
        if handler is not None and handler.__doc__:
            return inspect.cleandoc(handler.__doc__)
        from tenants.api_access import PortalApi, TenantApi  # portal sits below tenants
        for cls in type(self.view).__mro__:
            if cls in (PortalApi, TenantApi):
                break
            if cls.__dict__.get("__doc__"):
                return inspect.cleandoc(cls.__doc__)
        return ""

    def _get_response_for_code(self, serializer, status_code, media_types=None,
                               direction="response"):
        response = super()._get_response_for_code(serializer, status_code, media_types,
                                                   direction)
        body = serializer.response if isinstance(serializer, OpenApiResponse) else serializer
        paginated = isinstance(self._get_paginator(), PortalPagination)
        if paginated and str(status_code).startswith("2") and self._is_list_view(body):
            response["headers"] = {**PAGE_HEADERS, **response.get("headers", {})}
        return response

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code, description in _ERRORS.items():
            if code == "404" and "{" not in self.path:
                continue
            if code not in responses:
                responses[code] = self._get_response_for_code(ApiErrorSerializer, code,
                                                              direction=direction)
                responses[code]["description"] = description
        return responses
