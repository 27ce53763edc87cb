"""Who and where a piece of work comes from: request id, client IP, tenant and actor, per
request or task.

Set by `RequestContextMiddleware` for web requests (tenant and actor are added once known,
with `update`), and for Celery tasks from the headers of the message that enqueued them
(`portal.celery`). Services read it (through `audit.record`) and every log line carries it
(`portal.logs`) without the request being passed down to them.
"""

from __future__ import annotations

import contextvars
import ipaddress
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from django.conf import settings


@dataclass(frozen=True)
class RequestContext:
    request_id: str = ""
    client_ip: str | None = None
    tenant: str = ""  # the tenant's slug, once a view or the API key resolved it
    actor: str = ""  # "user:<id>", "service_account:<id>", "api_key:<id>"; never an address


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


def update(**fields: str) -> None:
    """Add what became known later in the request (the tenant a view resolved, the actor a
    bearer token proved) for the rest of it: the next audit events and log lines carry it."""
    _current.set(replace(_current.get(), **fields))


@contextmanager
def bound(**fields: str) -> Iterator[RequestContext]:
    """The current context with `fields` changed, for the duration of the block."""
    token = _current.set(replace(_current.get(), **fields))
    try:
        yield _current.get()
    finally:
        _current.reset(token)


def actor_label(actor) -> str:
    """How logs name who acted: its kind and id (a person's address stays out of logs)."""
    kind = getattr(actor, "audit_actor_type", "user")
    if kind == "system":  # a service account: "service-account:<provider>:<client>"
        return actor.audit_label
    return f"{kind}:{actor.pk}"


def new_request_id(offered: str | None = None) -> str:
    """Keep a well-formed id offered by a proxy, so logs correlate; otherwise mint one."""
    if offered and _REQUEST_ID.match(offered):
        return offered
    return uuid.uuid4().hex


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_address(value: str) -> IPAddress | None:
    """An address as a peer or a proxy states it: `a.b.c.d`, `a.b.c.d:port`, an IPv6 address,
    `[v6]:port`; IPv4-mapped IPv6 is read as the IPv4 address it carries."""
    value = value.strip()
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def is_trusted_proxy(peer: str | None) -> bool:
    """Whether `peer` may set forwarded headers: only the networks in TRUSTED_PROXIES."""
    if not settings.TRUSTED_PROXIES or not peer:
        return False
    address = parse_address(peer)
    return address is not None and any(address in net for net in settings.TRUSTED_PROXIES)


def client_address(peer: str | None, forwarded_for: str = "") -> IPAddress | None:
    """The client's address: the peer's own, or, when the peer is a trusted proxy, the
    right-most X-Forwarded-For hop that is not one. Each proxy appends the address it got the
    request from, so hops left of the first untrusted one were written by the client and
    prove nothing. When every hop is a trusted proxy, the left-most is the client. A hop a
    trusted proxy wrote that is not an address makes the client unknown (None), which no
    network allow-list matches."""
    address = parse_address(peer) if peer else None
    if address is None or not settings.TRUSTED_PROXIES:
        return address
    trusted = settings.TRUSTED_PROXIES
    if not any(address in net for net in trusted):
        return address
    for hop in reversed(forwarded_for.split(",")):
        if not hop.strip():
            continue
        address = parse_address(hop)
        if address is None or not any(address in net for net in trusted):
            return address
    return address
