"""TRUSTED_PROXIES alone decides who may say where a request came from: Django (REMOTE_ADDR,
allauth's client address, the audit trail, X-Forwarded-Proto), the gateway (key network
allow-lists, per-client limits) and the HTTP server (uvicorn's own forwarded-header handling
is off even when `--no-proxy-headers` is forgotten)."""

import ipaddress
import re
import time

import pytest
import requests
from allauth.account.adapter import get_adapter
from django.conf import settings as django_settings
from django.db import connection
from django.http import HttpResponse
from django.test import RequestFactory

from audit.models import AuditEvent
from gateway import services
from portal.middleware import ForwardedHeadersMiddleware
from portal.request_context import client_address
from tests.support.gateway_fixtures import SERVER_OPTIONS, start_portal_server, wait_for
from tests.support.processes import stop

CHAT = {"model": "chat-small", "messages": [{"role": "user", "content": "hi"}]}
FORGED = "203.0.113.9"  # what a client on the host claims in X-Forwarded-For


def networks(*cidrs):
    return [ipaddress.ip_network(c) for c in cidrs]


@pytest.mark.parametrize("trusted,peer,forwarded_for,client", [
    ((), "127.0.0.1", FORGED, "127.0.0.1"),  # the default: nobody is a proxy
    (("127.0.0.0/8",), "127.0.0.1", FORGED, FORGED),
    # Proxies append; what is left of the first untrusted hop the client wrote itself.
    (("127.0.0.0/8",), "127.0.0.1", f"198.51.100.1, {FORGED}", FORGED),
    (("127.0.0.0/8", "10.0.0.0/8"), "127.0.0.1", f"{FORGED}, 10.0.0.5", FORGED),
    (("127.0.0.0/8",), "198.51.100.2", FORGED, "198.51.100.2"),  # not a proxy: ignored
    (("127.0.0.0/8", "10.0.0.0/8"), "127.0.0.1", "10.0.0.7", "10.0.0.7"),  # all trusted
    (("127.0.0.0/8",), "127.0.0.1", "", "127.0.0.1"),  # the proxy's own request
    (("127.0.0.0/8",), "127.0.0.1", "unknown", None),  # a proxy's hop that is no address
    (("127.0.0.0/8",), "::ffff:127.0.0.1", f"{FORGED}:4711", FORGED),
    (("127.0.0.0/8",), "127.0.0.1", "[2001:db8::1]:443", "2001:db8::1"),
])
def test_the_client_is_the_right_most_untrusted_hop(settings, trusted, peer, forwarded_for,
                                                    client):
    settings.TRUSTED_PROXIES = networks(*trusted)
    found = client_address(peer, forwarded_for)
    assert (str(found) if found else None) == client


def _through_middleware(**meta):
    seen = {}

    def view(request):
        seen.update(remote_addr=request.META.get("REMOTE_ADDR"), secure=request.is_secure(),
                    allauth=get_adapter(request).get_client_ip(request),
                    forwarded_for=request.headers.get("X-Forwarded-For"))
        return HttpResponse()

    ForwardedHeadersMiddleware(view)(RequestFactory().get("/", **meta))
    return seen


def test_django_ignores_forwarded_headers_from_an_untrusted_peer(settings):
    settings.TRUSTED_PROXIES = []
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    seen = _through_middleware(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR=FORGED,
                               HTTP_X_FORWARDED_PROTO="https")
    assert seen == {"remote_addr": "127.0.0.1", "secure": False, "allauth": "127.0.0.1",
                    "forwarded_for": None}


def test_django_believes_a_trusted_proxy(settings):
    settings.TRUSTED_PROXIES = networks("127.0.0.0/8")
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    seen = _through_middleware(REMOTE_ADDR="127.0.0.1",
                               HTTP_X_FORWARDED_FOR=f"198.51.100.1, {FORGED}",
                               HTTP_X_FORWARDED_PROTO="https")
    assert (seen["remote_addr"], seen["allauth"], seen["secure"]) == (FORGED, FORGED, True)


# --- through the real server --------------------------------------------------------------


def failed_login_address(base: str, forwarded_for: str) -> str:
    """Sign in with a wrong password through the server; the client address the audit trail
    recorded for the failure."""
    browser = requests.Session()
    page = browser.get(base + "/accounts/login/", timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    marker = f"nobody-{time.monotonic_ns()}@example.test"
    browser.post(base + "/accounts/login/", timeout=10,
                 data={"csrfmiddlewaretoken": token, "login": marker, "password": "wrong"},
                 headers={"X-Forwarded-For": forwarded_for, "Referer": base + "/accounts/login/"})
    event = AuditEvent.objects.filter(action="auth.login_failed",
                                      details__email=marker).get()
    return event.client_ip


def call(base: str, token: str, forwarded_for: str) -> requests.Response:
    return requests.post(base + "/v1/chat/completions", json=CHAT, timeout=10, headers={
        "Authorization": f"Bearer {token}", "X-Forwarded-For": forwarded_for})


@pytest.mark.django_db(transaction=True)
def test_a_forged_address_from_the_host_is_judged_by_the_real_peer(served, gateway_server):
    """The default (no TRUSTED_PROXIES): a client on the host can't pass a key's network
    allow-list by claiming an address."""
    _key, elsewhere = services.apikey_create(actor=served.actor, tenant=served.tenant,
                                             name="office", allowed_networks=["203.0.113.0/24"])
    _key, local = services.apikey_create(actor=served.actor, tenant=served.tenant,
                                         name="host", allowed_networks=["127.0.0.0/8"])
    response = call(gateway_server.url, elsewhere, FORGED)
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "ip_not_allowed"
    assert "127.0.0.1" in response.json()["error"]["message"]
    assert call(gateway_server.url, local, FORGED).status_code == 200
    assert failed_login_address(gateway_server.url, FORGED) == "127.0.0.1"


@pytest.fixture(scope="module")
def trusting_server(django_db_setup, django_db_blocker):
    """A server whose TRUSTED_PROXIES is loopback, started the careless way: without
    --no-proxy-headers and with uvicorn told to trust every peer's forwarded headers."""
    with django_db_blocker.unblock():
        database = dict(connection.settings_dict)
    careless = [option for option in SERVER_OPTIONS if option != "--no-proxy-headers"]
    server = start_portal_server(database, django_settings.REDIS_URL, options=careless,
                                 TRUSTED_PROXIES="127.0.0.0/8", FORWARDED_ALLOW_IPS="*")
    yield server
    stop(server.process)


@pytest.mark.django_db(transaction=True)
def test_behind_a_trusted_proxy_the_right_most_untrusted_address_counts(served,
                                                                        trusting_server):
    _key, proxied = services.apikey_create(actor=served.actor, tenant=served.tenant,
                                           name="proxied", allowed_networks=["198.51.100.0/24"])
    _key, forged = services.apikey_create(actor=served.actor, tenant=served.tenant,
                                          name="forged", allowed_networks=["203.0.113.0/24"])
    # The client wrote 203.0.113.9; the proxy appended the address it saw, 198.51.100.7.
    chain = f"{FORGED}, 198.51.100.7"
    response = wait_for(lambda: (r := call(trusting_server.url, proxied, chain)).status_code
                        == 200 and r, timeout=10)
    assert response.status_code == 200, response.text
    refused = call(trusting_server.url, forged, chain)
    assert refused.status_code == 403 and "198.51.100.7" in refused.json()["error"]["message"]
    assert failed_login_address(trusting_server.url, chain) == "198.51.100.7"
