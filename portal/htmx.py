"""One URL serves a whole page and, to htmx, the fragment of it that htmx swaps in."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from portal.api import ApplicationError


def wants_partial(request: HttpRequest) -> bool:
    """True for an htmx request that swaps a fragment. A boosted link or form (`hx-boost`)
    replaces the whole body, so it gets the whole page, like a plain request."""
    htmx = getattr(request, "htmx", None)
    return bool(htmx and not htmx.boosted)


def render_page_or_partial(request: HttpRequest, page_template: str, partial_template: str,
                           context: dict, *, status: int = 200) -> HttpResponse:
    """The page, or for htmx its partial: pages include their partials, so both come from one
    source."""
    template = partial_template if wants_partial(request) else page_template
    return render(request, template, context, status=status)


def page_after_service(page: Callable[..., HttpResponse], call: Callable[[], object],
                       notice: str) -> HttpResponse:
    """Runs the service `call()`: then `page(notice=notice)`, or when it refuses,
    `page(error=<its message>, status=422)`."""
    try:
        call()
    except ApplicationError as exc:
        return page(error=exc.message, status=422)
    return page(notice=notice)
