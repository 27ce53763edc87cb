"""The one way out for calls to an address someone typed: budget webhooks (a tenant admin),
external endpoints and clusters' API servers (an MSP admin), and the gateway's calls to the
model servers behind them.

1. A URL must be http(s) and name a host.
2. The host is resolved once and every answer is vetted (`refusal`): loopback, private,
   link-local, shared, reserved, multicast and unspecified addresses are refused, and so are
   the IPv6 forms that reach such an IPv4 address another way — IPv4-mapped and
   IPv4-compatible addresses, NAT64 prefixes, 6to4 and Teredo addresses embedding one. One
   refused answer refuses the host.
3. The connection goes to an address that was vetted; the Host header, TLS SNI and the
   certificate check keep the name. A second DNS answer (DNS rebinding) is never asked for.

Each kind of caller has a `Policy`: webhooks may call public addresses and the networks in
BUDGET_WEBHOOK_ALLOWED_NETWORKS; endpoints and clusters, which only MSP admins configure, may
call public addresses — or, once OUTBOUND_ALLOWED_NETWORKS is set, only the networks it lists
(private ones included: that is how a cluster on the operator's own network is allowed).

Proxies from the environment (HTTPS_PROXY …) are not used: a proxy would resolve the name
again, out of reach of the vetting.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import requests
import urllib3
from aiohttp.abc import AbstractResolver, ResolveResult
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import create_connection

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

NAT64_PREFIXES = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d


class OutboundRefused(Exception):
    """The policy refuses this URL or one of its host's addresses. `message` is for people."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Policy:
    """Where one kind of caller may connect. `allowed` networks are always allowed; with
    `only_allowed`, a non-empty `allowed` is also the only place allowed (public addresses
    outside it included)."""

    who: str  # "Webhooks", "External endpoints and clusters": the subject of refusals
    allowed: tuple[IPNetwork, ...]
    only_allowed: bool
    setting: str  # the setting that lists `allowed`, named in refusals

    def rule(self) -> str:
        """What the policy allows, in a sentence's end."""
        if self.only_allowed and self.allowed:
            listed = ", ".join(str(n) for n in self.allowed)
            return f"may only call the networks in {self.setting} ({listed})"
        return (f"may only call public addresses, or networks the operator allows in "
                f"{self.setting}")


def webhook_policy() -> Policy:
    return Policy(who="Webhooks", allowed=tuple(settings.BUDGET_WEBHOOK_ALLOWED_NETWORKS),
                  only_allowed=False, setting="BUDGET_WEBHOOK_ALLOWED_NETWORKS")


def msp_policy() -> Policy:
    """External endpoints, clusters' API servers and the model servers the gateway calls."""
    return Policy(who="External endpoints and clusters",
                  allowed=tuple(settings.OUTBOUND_ALLOWED_NETWORKS), only_allowed=True,
                  setting="OUTBOUND_ALLOWED_NETWORKS")


# --- Vetting addresses -------------------------------------------------------------------

def _kind(ip: IPAddress) -> str:
    for attribute, name in (("is_loopback", "loopback"), ("is_link_local", "link-local"),
                            ("is_private", "private network"), ("is_reserved", "reserved")):
        if getattr(ip, attribute):
            return name
    return "not globally routable"


def refusal(address: str | IPAddress, policy: Policy) -> str | None:
    """Why `policy` refuses to connect to `address`, or None when it may."""
    original = ipaddress.ip_address(str(address).split("%", 1)[0])  # drop an IPv6 zone
    ip = original
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # a socket to ::ffff:a.b.c.d reaches a.b.c.d
    if ip.is_unspecified:
        return "the unspecified address (it reaches this machine)"
    if ip.is_multicast:
        return "a multicast address"
    if any(ip in network or original in network for network in policy.allowed):
        return None
    if policy.only_allowed and policy.allowed:
        return f"outside the networks {policy.setting} allows"
    if ip.version == 6:
        if any(ip in prefix for prefix in NAT64_PREFIXES):
            return "a NAT64 address (it reaches IPv4 networks through a translator)"
        if ip in IPV4_COMPATIBLE and not ip.is_loopback:
            return "an IPv4-compatible IPv6 address (deprecated)"
        embedded = [("6to4", ip.sixtofour)]
        if ip.teredo:
            embedded += [("Teredo server", ip.teredo[0]), ("Teredo client", ip.teredo[1])]
        for form, inner in embedded:
            if inner is not None and not inner.is_global:
                return f"a {form} address embedding the private or reserved address {inner}"
    if not ip.is_global:
        return f"a private or reserved address ({_kind(ip)})"
    if ip.version == 6 and (ip.is_site_local or ip.is_reserved):
        return "a private or reserved address (reserved IPv6 range)"  # e.g. ::ffff:0:a.b.c.d
    return None


def resolve(host: str, port: int, policy: Policy) -> list[str]:
    """The host's addresses, every one vetted, in the resolver's order of preference. Raises
    OutboundRefused when one is refused and socket.gaierror when there is none."""
    host = host.strip("[]")
    answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(info[4][0] for info in answers))
    for address in addresses:
        reason = refusal(address, policy)
        if reason:
            shown = host if host == address else f"“{host}” resolves to {address}, which"
            raise OutboundRefused(f"{shown} is {reason}: {policy.who.lower()} "
                                  f"{policy.rule()}.")
    return addresses


def check_url(url: str, policy: Policy, *, unresolvable_ok: bool = False) -> None:
    """Refuse (OutboundRefused) a URL that is not http(s) or whose host is refused. With
    `unresolvable_ok`, a name that does not resolve yet passes: every connection is vetted
    again when it is made."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OutboundRefused("Use an http:// or https:// URL.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise OutboundRefused("The URL's port is not a number from 1 to 65535.") from None
    try:
        resolve(parts.hostname, port, policy)
    except (OSError, ValueError):
        if not unresolvable_ok:
            raise OutboundRefused(f"The host “{parts.hostname}” can't be resolved.") from None


def mask_url(url: str) -> str:
    """The URL without what may be a secret (credentials, path, query): scheme, host and
    port, e.g. https://hooks.slack.com/… — for people who may not see the whole URL."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host + (f":{port}" if port else "")
    hidden = bool(parts.path.strip("/") or parts.query or parts.fragment or parts.username)
    return urlunsplit((parts.scheme, netloc, "/…" if hidden else "/", "", ""))


# --- Connecting to vetted addresses: requests and urllib3 (webhooks, probes, Kubernetes) ----

class _VettedConnectionMixin:
    """Resolve, vet, then connect to a vetted address. Everything else about the
    connection (Host header, SNI, certificate hostname) keeps using `self.host`."""

    outbound_policy: Policy

    def _new_conn(self) -> socket.socket:
        try:
            addresses = resolve(self._dns_host, self.port, self.outbound_policy)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        last: OSError | None = None
        for address in addresses:
            try:
                return create_connection((address, self.port), self.timeout,
                                         source_address=self.source_address,
                                         socket_options=self.socket_options)
            except TimeoutError as exc:
                raise ConnectTimeoutError(self, f"Connection to {self.host} timed out. "
                                                f"(connect timeout={self.timeout})") from exc
            except OSError as exc:
                last = exc
        raise NewConnectionError(self, f"Failed to establish a new connection: {last}")


class VettedHTTPConnection(_VettedConnectionMixin, HTTPConnection):
    def __init__(self, *args: Any, outbound_policy: Policy, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.outbound_policy = outbound_policy


class VettedHTTPSConnection(_VettedConnectionMixin, HTTPSConnection):
    def __init__(self, *args: Any, outbound_policy: Policy, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.outbound_policy = outbound_policy


_VETTED_CONNECTIONS = {"http": VettedHTTPConnection, "https": VettedHTTPSConnection}


class VettedPoolManager(urllib3.PoolManager):
    """A PoolManager whose every new connection goes through the policy."""

    def __init__(self, *, policy: Policy, **kwargs: Any):
        super().__init__(**kwargs)
        self.outbound_policy = policy

    def _new_pool(self, scheme: str, host: str, port: int,
                  request_context: dict[str, Any] | None = None):
        pool = super()._new_pool(scheme, host, port, request_context)
        pool.ConnectionCls = _VETTED_CONNECTIONS[scheme]
        pool.conn_kw["outbound_policy"] = self.outbound_policy
        return pool


class VettedAdapter(HTTPAdapter):
    """A requests transport adapter that connects only to vetted addresses."""

    def __init__(self, policy: Policy, **kwargs: Any):
        self.outbound_policy = policy  # init_poolmanager, called by super(), needs it
        super().__init__(**kwargs)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False,
                         **pool_kwargs: Any) -> None:
        self._pool_connections, self._pool_maxsize, self._pool_block = (
            connections, maxsize, block)
        self.poolmanager = VettedPoolManager(policy=self.outbound_policy, num_pools=connections,
                                             maxsize=maxsize, block=block, **pool_kwargs)


def session(policy: Policy) -> requests.Session:
    """A requests session that obeys `policy` on every connection, redirects included.
    Callers catch OutboundRefused besides requests' own exceptions."""
    http = requests.Session()
    http.trust_env = False  # no proxies, no .netrc: nothing that re-resolves or adds secrets
    adapter = VettedAdapter(policy)
    http.mount("http://", adapter)
    http.mount("https://", adapter)
    return http


def pool_manager(policy: Policy, **kwargs: Any) -> VettedPoolManager:
    """A urllib3 PoolManager that obeys `policy` (for clients built on urllib3, such as the
    official Kubernetes client)."""
    return VettedPoolManager(policy=policy, **kwargs)


# --- Connecting to vetted addresses: aiohttp (the gateway) ------------------------------

class VettedResolver(AbstractResolver):
    """An aiohttp resolver that vets every answer. The connector connects to the addresses it
    returns, and caches them for its `ttl_dns_cache`, so a vetted answer is what is used.
    (aiohttp does not resolve IP literals: those were vetted when the URL was saved, and the
    periodic health check vets them again.)"""

    def __init__(self, policy: Policy, inner: AbstractResolver | None = None):
        self.policy = policy
        self.inner = inner or aiohttp.DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        answers = await self.inner.resolve(host, port, family)
        for answer in answers:
            reason = refusal(answer["host"], self.policy)
            if reason:
                message = (f"“{host}” resolves to {answer['host']}, which is {reason}: "
                           f"{self.policy.who.lower()} {self.policy.rule()}.")
                logger.warning("Refused an outbound connection: %s", message)
                # An OSError, so the connector reports it like any failed resolution.
                raise OSError(message)
        return answers

    async def close(self) -> None:
        await self.inner.close()
