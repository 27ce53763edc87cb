"""Who and where a piece of work comes from: request id and client IP, per request or task.

Set by `RequestContextMiddleware` for web requests; services read it (through
`audit.record`) without the request being passed down to them.
"""

from __future__ import annotations

import contextvars
import ipaddress
import re
import uuid
from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class RequestContext:
    request_id: str = ""
    client_ip: str | None = None


_current: contextvars.ContextVar[RequestContext] = contextvars.ContextVar(
    "portal_request_context", default=RequestContext()  # noqa: B039 (frozen, immutable)
)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")


def current() -> RequestContext:
    return _current.get()


def bind(context: RequestContext) -> contextvars.Token:
    return _current.set(context)


def reset(token: contextvars.Token) -> None:
    _current.reset(token)


def new_request_id(offered: str | None = None) -> str:
    """Keep a well-formed id offered by a proxy, so logs correlate; otherwise mint one."""
    if offered and _REQUEST_ID.match(offered):
        return offered
    return uuid.uuid4().hex


def client_ip(meta: dict) -> str | None:
    """REMOTE_ADDR, or the last untrusted hop of X-Forwarded-For behind trusted proxies."""
    remote = meta.get("REMOTE_ADDR") or None
    if not remote or not settings.TRUSTED_PROXIES:
        return remote
    try:
        chain = [remote] + [
            hop.strip() for hop in reversed(meta.get("HTTP_X_FORWARDED_FOR", "").split(","))
        ]
        for hop in chain:
            address = ipaddress.ip_address(hop)
            if not any(address in net for net in settings.TRUSTED_PROXIES):
                return str(address)
    except ValueError:
        return remote
    return remote
