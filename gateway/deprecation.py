"""What the gateway says about a deprecated model: RFC 9745 `Deprecation` (`@<unix seconds>`)
and RFC 8594 `Sunset` (an HTTP-date) headers, a `Link` to the successor and the older
`Warning` header; after the sunset, a 410 in OpenAI's error shape that names the successor.

Reads only the route the worker caches (`gateway.directory.Route`): no database, no Redis.
"""

from __future__ import annotations

from email.utils import formatdate

from gateway.directory import Route
from gateway.errors import GatewayError


def _headers(route: Route) -> list[tuple[bytes, bytes]]:
    headers: list[tuple[bytes, bytes]] = []
    if route.deprecated_at is not None:
        headers.append((b"deprecation", f"@{int(route.deprecated_at)}".encode()))
    if route.sunset_at is not None:
        headers.append((b"sunset", formatdate(route.sunset_at, usegmt=True).encode()))
    if route.successor:
        headers.append((b"link", f'</v1/models/{route.successor}>; rel="successor-version"'
                        .encode()))
    move = f"move to {route.successor}" if route.successor else "move to another model"
    when = (f" on {formatdate(route.sunset_at, usegmt=True)}" if route.sunset_at is not None
            else "")
    headers.append((b"warning", f'299 - "Model {route.slug} is deprecated and will be retired'
                                f'{when}; {move}."'.encode()))
    return headers


def past_sunset(route: Route, now: float) -> bool:
    """A deprecated model whose sunset has come: refused, and no longer listed."""
    return (route.lifecycle == "deprecated" and route.sunset_at is not None
            and now >= route.sunset_at)


def deprecation_headers(route: Route, now: float) -> list[tuple[bytes, bytes]]:
    """The headers of a request for `route`; raises the sunset error once it is past."""
    if route.lifecycle != "deprecated":
        return []
    headers = _headers(route)
    if past_sunset(route, now):
        instead = (f"use `{route.successor}` instead" if route.successor
                   else "choose another model from GET /v1/models")
        raise GatewayError(
            410, f"The model `{route.slug}` reached its sunset on "
                 f"{formatdate(route.sunset_at, usegmt=True)} and is no longer served; "
                 f"{instead}.", code="model_sunset", param="model", headers=headers)
    return headers
