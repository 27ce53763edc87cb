from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from portal import request_context, tracing

# Everything the portal loads comes from itself: no CDN, web font, analytics or other host.
# Inline styles are allowed because plotly.js and htmx set element styles at run time.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'self'",
        "object-src 'none'",
    ]
)


# Headers in which a proxy says where a request came from (META names).
_FORWARDED_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST",
                      "HTTP_X_FORWARDED_PORT", "HTTP_X_REAL_IP", "HTTP_FORWARDED")


class ForwardedHeadersMiddleware:
    """First in the chain: from a trusted proxy (TRUSTED_PROXIES), REMOTE_ADDR becomes the
    client's address as the proxies state it; from anyone else the forwarded headers are
    dropped. Everything after (views, allauth's rate limits, the audit trail, the
    X-Forwarded-Proto that BEHIND_TLS_PROXY reads) sees only what a trusted proxy said."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        meta = request.META
        peer = meta.get("REMOTE_ADDR")
        if request_context.is_trusted_proxy(peer):
            address = request_context.client_address(peer, meta.get("HTTP_X_FORWARDED_FOR", ""))
            meta["REMOTE_ADDR"] = str(address) if address else ""
        else:
            for name in _FORWARDED_HEADERS:
                meta.pop(name, None)
        return self.get_response(request)


class RequestContextMiddleware:
    """Gives every request an id (echoed as X-Request-ID) and a client IP for the audit trail
    and the logs, and, with tracing on, a server span (continuing a caller's `traceparent`)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        context = request_context.RequestContext(
            request_id=request_context.new_request_id(request.headers.get("X-Request-ID")),
            client_ip=request.META.get("REMOTE_ADDR") or None,
        )
        request.request_id = context.request_id
        token = request_context.bind(context)
        try:
            with tracing.span(f"{request.method} {request.path}", kind="server",
                              parent=tracing.extract(request.headers),
                              attributes={"http.request.method": request.method,
                                          "url.path": request.path,
                                          "portal.request_id": context.request_id}) as span:
                response = self.get_response(request)
                if span is not None:
                    span.set_attribute("http.response.status_code", response.status_code)
                    if request.resolver_match:
                        span.update_name(f"{request.method} {request.resolver_match.route}")
        finally:
            request_context.reset(token)
        response["X-Request-ID"] = context.request_id
        return response


class RequestActorMiddleware:
    """After authentication: the signed-in person is the actor of the request's log lines
    (a bearer token's service account is set by `tenants.bearer`)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            request_context.update(actor=request_context.actor_label(user))
        return self.get_response(request)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response


class MethodNotAllowedPageMiddleware:
    """A browser that opens an address meant only for form submissions (a bookmark of the
    page a failed form left in the address bar) gets a page that leads on, not a blank 405.
    The API and the gateway keep their own 405 answers."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (response.status_code != 405 or request.method != "GET"
                or request.path.startswith(("/api/", "/v1/"))
                or "text/html" not in request.headers.get("Accept", "")
                or getattr(response, "streaming", False) or response.content):
            return response
        from django.shortcuts import render

        parent = request.path.rstrip("/").rsplit("/", 1)[0] + "/"
        page = render(request, "errors/405.html", {"parent": parent}, status=405)
        page["Allow"] = response.get("Allow", "")
        return page


class NoStoreMiddleware:
    """Nothing the portal answers is kept by a browser's or a proxy's cache: new API keys,
    rotated secrets, recovery codes, webhook secrets and playground tokens are in responses
    like any other, and a page can show one whenever it is given one. A response whose view
    chose its own Cache-Control keeps it. (Static files are answered before this by
    WhiteNoise, with their own long-lived caching.)"""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.setdefault("Cache-Control", "no-store")
        return response
