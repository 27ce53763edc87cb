"""The outbound-URL policy (portal/outbound.py): which addresses it refuses, and that a
connection goes to the address that was vetted — with requests (webhooks, health checks),
urllib3 (the Kubernetes client) and aiohttp (the gateway)."""

import asyncio
import concurrent.futures
import ipaddress
import socket

import aiohttp
import pytest
import requests
from aiohttp.abc import AbstractResolver

from portal import outbound
from tests.support.net import FakeDns, recording_server
from tests.support.tls import make_pki, tls_server

PUBLIC_V4 = "93.184.215.14"  # never contacted: the tests stop every connection before


def _run(coroutine):
    """asyncio.run in a thread of its own: earlier tests in the session (Playwright's sync API)
    may leave an event loop running in the main thread, where asyncio.run refuses to start."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _networks(*cidrs):
    return [ipaddress.ip_network(c) for c in cidrs]


@pytest.fixture
def public_only(settings):
    settings.BUDGET_WEBHOOK_ALLOWED_NETWORKS = []
    settings.OUTBOUND_ALLOWED_NETWORKS = []


@pytest.mark.parametrize("address,reason", [
    ("10.0.0.1", "private"),
    ("172.16.5.4", "private"),
    ("192.168.1.1", "private"),
    ("127.0.0.1", "loopback"),
    ("169.254.169.254", "link-local"),
    ("100.64.0.1", "private or reserved"),  # shared address space (CGNAT)
    ("0.0.0.0", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("::1", "loopback"),
    ("fe80::1", "link-local"),
    ("fc00::1", "private"),
    ("fec0::1", "reserved"),  # site-local, deprecated
    ("::", "unspecified"),
    # NAT64: reaches IPv4 networks through a translator, whatever the embedded address
    ("64:ff9b::808:808", "NAT64"),
    ("64:ff9b::a00:1", "NAT64"),
    ("64:ff9b:1::a00:1", "NAT64"),
    # 6to4 embedding 10.0.0.1 and 192.168.0.1
    ("2002:a00:1::1", "6to4 address embedding the private or reserved address 10.0.0.1"),
    ("2002:c0a8:1::1", "6to4 address embedding the private or reserved address 192.168.0.1"),
    # Teredo whose client (obfuscated) is 10.0.0.1
    ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "Teredo client address embedding the private"),
    # IPv4-mapped and IPv4-compatible forms of private addresses
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.0.0.1", "private"),
    ("::ffff:169.254.169.254", "link-local"),
    ("::7f00:1", "IPv4-compatible"),
    ("::ffff:0:a00:1", "reserved"),  # IPv4-translated (SIIT) 10.0.0.1
])
def test_non_public_addresses_are_refused(public_only, address, reason):
    for policy in (outbound.webhook_policy(), outbound.msp_policy()):
        found = outbound.refusal(address, policy)
        assert found and reason in found, (address, found)


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8",
                                     "2002:808:808::1"])
def test_public_addresses_pass(public_only, address):
    assert outbound.refusal(address, outbound.webhook_policy()) is None
    assert outbound.refusal(address, outbound.msp_policy()) is None


def test_the_msp_allow_list_limits_endpoints_and_clusters_to_its_networks(settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = _networks("10.20.0.0/16", "127.0.0.0/8")
    policy = outbound.msp_policy()
    assert outbound.refusal("10.20.3.4", policy) is None
    assert outbound.refusal("::ffff:127.0.0.1", policy) is None  # the same loopback
    for outside in ("10.30.0.1", "8.8.8.8", "169.254.169.254"):
        assert "outside the networks OUTBOUND_ALLOWED_NETWORKS allows" in \
            outbound.refusal(outside, policy)
    # Never, whatever the list says: the unspecified address reaches this machine.
    settings.OUTBOUND_ALLOWED_NETWORKS = _networks("0.0.0.0/0")
    assert "unspecified" in outbound.refusal("0.0.0.0", outbound.msp_policy())


def test_webhook_networks_add_to_public_addresses(settings):
    settings.BUDGET_WEBHOOK_ALLOWED_NETWORKS = _networks("10.9.0.0/16")
    policy = outbound.webhook_policy()
    assert outbound.refusal("10.9.1.1", policy) is None
    assert outbound.refusal("8.8.8.8", policy) is None
    assert "private" in outbound.refusal("10.8.1.1", policy)


def test_a_hostname_resolving_to_a_private_address_is_refused(public_only, monkeypatch):
    FakeDns({"intranet.example": [["10.0.0.7"]],
             "mixed.example": [[PUBLIC_V4, "192.168.0.9"]],
             "nat64.example": [["64:ff9b::a00:7"]]}).install(monkeypatch)
    for host, address in (("intranet.example", "10.0.0.7"), ("mixed.example", "192.168.0.9"),
                          ("nat64.example", "64:ff9b::a00:7")):
        with pytest.raises(outbound.OutboundRefused) as caught:
            outbound.check_url(f"https://{host}/hook", outbound.webhook_policy())
        assert f"“{host}” resolves to {address}" in caught.value.message


def test_urls_must_be_http_with_a_host(public_only):
    for url in ("ftp://example.org/x", "file:///etc/passwd", "gopher://x", "http:///nohost"):
        with pytest.raises(outbound.OutboundRefused, match="http:// or https://"):
            outbound.check_url(url, outbound.webhook_policy())
    with pytest.raises(outbound.OutboundRefused, match="can't be resolved"):
        outbound.check_url("https://no-such-host.invalid/", outbound.webhook_policy())
    outbound.check_url("https://no-such-host.invalid/", outbound.msp_policy(),
                       unresolvable_ok=True)


def test_mask_url_keeps_only_scheme_host_and_port():
    assert outbound.mask_url("https://hooks.slack.com/services/T0/B0/XXXX") == \
        "https://hooks.slack.com/…"
    assert outbound.mask_url("https://user:pw@example.org:8443/?token=abc") == \
        "https://example.org:8443/…"
    assert outbound.mask_url("http://[::1]:8080/") == "http://[::1]:8080/"


# --- DNS rebinding: the connection goes to the address that was vetted --------------------

def _record_connections(monkeypatch):
    """Stop every connection at the socket boundary and record where it would have gone."""
    attempts = []

    def create_connection(address, *args, **kwargs):
        attempts.append(address[0])
        raise ConnectionRefusedError(f"test: not connecting to {address[0]}")

    monkeypatch.setattr(outbound, "create_connection", create_connection)
    return attempts


def test_requests_connect_to_the_vetted_address_not_a_second_answer(public_only, monkeypatch):
    """The resolver answers a public address first and loopback afterwards (rebinding): the
    connection goes to the public address it vetted; nothing asks the resolver again."""
    with recording_server() as internal:
        dns = FakeDns({"rebind.example": [[PUBLIC_V4], ["127.0.0.1"]]}).install(monkeypatch)
        attempts = _record_connections(monkeypatch)
        with outbound.session(outbound.webhook_policy()) as http, \
                pytest.raises(requests.ConnectionError):
            http.post(f"http://rebind.example:{internal.port}/hook", data=b"{}", timeout=2)
        assert attempts == [PUBLIC_V4]
        assert dns.lookups == ["rebind.example"]
        assert internal.requests == []


def test_requests_refuse_before_connecting_when_the_answer_is_private(public_only,
                                                                      monkeypatch):
    with recording_server() as internal:
        FakeDns({"rebind.example": [["127.0.0.1"]]}).install(monkeypatch)
        attempts = _record_connections(monkeypatch)
        with outbound.session(outbound.webhook_policy()) as http, \
                pytest.raises(outbound.OutboundRefused, match="loopback"):
            http.get(f"http://rebind.example:{internal.port}/", timeout=2)
        assert attempts == [] and internal.requests == []


def test_a_redirect_is_vetted_like_the_first_request(settings):
    """An allowed server that redirects elsewhere gets no request through to the elsewhere."""
    settings.OUTBOUND_ALLOWED_NETWORKS = _networks("127.0.0.1/32")
    with recording_server("127.0.0.2") as internal, \
            recording_server(redirect_to=internal.url + "/admin") as allowed:
        with outbound.session(outbound.msp_policy()) as http, \
                pytest.raises(outbound.OutboundRefused, match="127.0.0.2 is outside"):
            http.get(allowed.url + "/models", timeout=2)
        assert len(allowed.requests) == 1 and internal.requests == []


def test_tls_keeps_the_name_for_sni_and_the_certificate(settings, tmp_path, monkeypatch):
    """Connecting to the vetted IP does not lose the name: the certificate for `localhost` is
    checked against the URL's host, and the Host header is the URL's."""
    settings.OUTBOUND_ALLOWED_NETWORKS = _networks("127.0.0.0/8")
    FakeDns({"localhost": [["127.0.0.1"]]}).install(monkeypatch)
    pki = make_pki()
    (tmp_path / "ca.pem").write_text(pki.ca_pem)
    with tls_server(pki, tmp_path) as server, outbound.session(outbound.msp_policy()) as http:
        response = http.get(f"https://localhost:{server.port}/models", timeout=5,
                            verify=str(tmp_path / "ca.pem"))
        assert response.status_code == 200
        assert server.requests[0][1]["Host"] == f"localhost:{server.port}"
        FakeDns({"other-name.example": [["127.0.0.1"]]}).install(monkeypatch)
        with pytest.raises(requests.exceptions.SSLError):  # the certificate names localhost
            http.get(f"https://other-name.example:{server.port}/", timeout=5,
                     verify=str(tmp_path / "ca.pem"))


def test_environment_proxies_are_not_used(settings, monkeypatch):
    settings.OUTBOUND_ALLOWED_NETWORKS = _networks("127.0.0.0/8")
    with recording_server() as proxy, recording_server() as target:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("http_proxy", proxy.url)
        with outbound.session(outbound.msp_policy()) as http:
            assert http.get(target.url + "/x", timeout=5).status_code == 200
        assert proxy.requests == [] and [r[1] for r in target.requests] == ["/x"]


# --- aiohttp: the gateway's resolver ------------------------------------------------------

class _Rebinding(AbstractResolver):
    """Answers each name with the next address of its list."""

    def __init__(self, answers: dict[str, list[str]]):
        self.answers = answers
        self.lookups: list[str] = []

    async def resolve(self, host, port=0, family=socket.AF_INET):
        self.lookups.append(host)
        address = self.answers[host].pop(0)
        return [{"hostname": host, "host": address, "port": port,
                 "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                 "proto": 0, "flags": socket.AI_NUMERICHOST}]

    async def close(self):
        pass


def test_the_gateway_resolver_vets_every_answer(settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = []

    async def scenario():
        inner = _Rebinding({"model.example": [PUBLIC_V4, "10.0.0.5"]})
        resolver = outbound.VettedResolver(outbound.msp_policy(), inner)
        first = await resolver.resolve("model.example", 80)
        with pytest.raises(OSError, match="10.0.0.5, which is a private"):
            await resolver.resolve("model.example", 80)
        return first

    assert [a["host"] for a in _run(scenario())] == [PUBLIC_V4]


def test_the_gateway_connects_to_the_vetted_answer_and_keeps_it(settings):
    """Through aiohttp's connector as the gateway builds it: the request goes to the address
    the resolver vetted (a server on loopback, allowed here), and the cached answer is reused,
    so a later private answer (rebinding) is never asked for."""
    settings.OUTBOUND_ALLOWED_NETWORKS = _networks("127.0.0.0/8")
    with recording_server() as upstream:
        async def scenario():
            inner = _Rebinding({"model.example": ["127.0.0.1", "10.0.0.5"]})
            connector = aiohttp.TCPConnector(
                force_close=True, ttl_dns_cache=300,
                resolver=outbound.VettedResolver(outbound.msp_policy(), inner))
            async with aiohttp.ClientSession(connector=connector) as http:
                for _ in range(2):
                    async with http.get(f"http://model.example:{upstream.port}/v1/models") as r:
                        assert r.status == 200
            return inner.lookups

        assert _run(scenario()) == ["model.example"]
        assert [(r[1], r[2]["Host"]) for r in upstream.requests] == [
            ("/v1/models", f"model.example:{upstream.port}")] * 2


def test_the_gateway_refuses_a_name_that_resolves_to_a_refused_address(settings):
    settings.OUTBOUND_ALLOWED_NETWORKS = _networks("127.0.0.0/8")

    async def scenario():
        inner = _Rebinding({"metadata.example": ["169.254.169.254"]})
        connector = aiohttp.TCPConnector(
            resolver=outbound.VettedResolver(outbound.msp_policy(), inner))
        async with aiohttp.ClientSession(connector=connector) as http:
            with pytest.raises(aiohttp.ClientConnectorError):
                await http.get("http://metadata.example/latest/meta-data")

    _run(scenario())
