"""Property-based fuzzing of the REST API: schemathesis generates requests from the OpenAPI
schema the portal serves at /api/schema/ (valid and invalid ones) and checks every answer —
never a 5xx, and status code, content type and body exactly as the schema documents them.

It runs as an MSP admin and as a tenant admin, each signed in through the portal's own
sign-in (password, then the authenticator code), against the WSGI application in this process
on the test database: each operation starts from the same data (tenants, members, invitations,
keys, budgets, a statement, usage, models with a published version, a cluster on the
Kubernetes API emulator, a deployment, an upload) and is rolled back afterwards. The run is
derandomized, so CI sees the same requests every time. No generated URL reaches the network:
outbound connections are allowed to loopback only.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import zlib
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import schemathesis
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections, transaction
from django.test import Client, override_settings
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, Phase
from hypothesis import settings as hypothesis_settings
from schemathesis.config import SchemathesisConfig

from audit.models import AuditEvent
from billing.budgets.services import budget_create
from billing.statements.services import statement_close
from billing.usage.services import usage_records_ingest
from deployments import services as deployment_services
from gateway import services as gateway_services
from models_catalog import services as catalog_services
from tenants import services as tenant_services
from tenants.models import TenantRole
from tests.factories import (
    PASSWORD,
    TOTP_SECRET,
    MembershipFactory,
    TenantFactory,
    UserFactory,
    make_msp_admin,
    published_version,
)
from tests.support.kube_emulator import start_emulator
from tests.totp import totp_code

EXAMPLES_PER_OPERATION = 5


def _served_schema() -> dict:
    """What /api/schema/ serves (the same generator and renderer as its view)."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(schema, renderer_context={}))


def _rest_api(schema: dict) -> dict:
    """The REST API only: the schema also describes the gateway's /v1/quota, which the ASGI
    gateway serves (with OpenAI's error shape), not this Django app; tests/gateway covers it."""
    return {**schema, "paths": {path: operations for path, operations in schema["paths"].items()
                                if not path.startswith("/v1/")}}


def _config(*, coverage: bool) -> SchemathesisConfig:
    """The coverage phase sends every field's boundary and invalid values (deterministic, and
    the most thorough; ~35 requests an operation), the fuzzing phase random valid and invalid
    requests (EXAMPLES_PER_OPERATION an operation)."""
    return SchemathesisConfig.from_dict({
        "seed": 20_260_101,
        "generation": {"mode": "all", "max-examples": EXAMPLES_PER_OPERATION,
                       "deterministic": True, "database": "none",
                       "with-security-parameters": False},
        "phases": {"stateful": {"enabled": False}, "coverage": {"enabled": coverage}},
        "checks": {
            # negative_data_rejection stays off: DRF deliberately reads JSON 0/1 as booleans
            # and numbers as strings, which it counts as invalid data accepted.
            "enabled": False,
            "not_a_server_error": {"enabled": True},
            "status_code_conformance": {"enabled": True},
            "content_type_conformance": {"enabled": True},
            "response_schema_conformance": {"enabled": True},
            "response_headers_conformance": {"enabled": True},
        },
    })


SERVED = _served_schema()
# The MSP admin reaches every operation: every field's boundary and invalid values (the
# coverage phase takes the place of random requests there). The tenant admin's run is about
# who may do what: random valid and invalid requests.
msp_schema = schemathesis.openapi.from_dict(_rest_api(SERVED), config=_config(coverage=True))
tenant_schema = schemathesis.openapi.from_dict(_rest_api(SERVED),
                                               config=_config(coverage=False))
SETTINGS = hypothesis_settings(
    max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
    phases=[Phase.explicit, Phase.generate], print_blob=True,
    suppress_health_check=list(HealthCheck))

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0]).is_loopback
    except ValueError:
        return host.lower() in _LOOPBACK_NAMES


@pytest.fixture(scope="module", autouse=True)
def _loopback_only():
    """Generated URLs (webhooks, clusters, external endpoints) must never leave the machine:
    name lookups and connections are refused for anything but loopback."""
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

    def getaddrinfo(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else str(host or "")
        if not _loopback(name):
            raise socket.gaierror(socket.EAI_NONAME, f"{name}: refused in the fuzz test")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
            raise ConnectionRefusedError(f"{address[0]}: refused in the fuzz test")
        return real_connect(sock, address)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", getaddrinfo)
        patch.setattr(socket.socket, "connect", connect)
        yield


@pytest.fixture(scope="module")
def kube():
    emulator = start_emulator()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker, kube, tmp_path_factory):
    """Enough of everything that the generated requests reach real objects: built once, in a
    transaction that each operation's test nests in (and rolls back to), and that is rolled
    back at the end."""
    directory = tmp_path_factory.mktemp("fuzz")
    overrides = override_settings(
        ALLOWED_JURISDICTIONS=["DE", "EU"], REGISTRY_URL="http://127.0.0.1:9",
        MODEL_UPLOAD_DIR=directory / "uploads", MODEL_SCAN_WORKDIR=directory / "scans",
        KUBE_REQUEST_TIMEOUT_SECONDS=1, KUBE_API_ATTEMPTS=1, KUBE_RETRY_BACKOFF_MS=10,
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"])
    with django_db_blocker.unblock(), overrides, transaction.atomic():
        yield _build_world(kube)
        transaction.set_rollback(True)


def _build_world(kube) -> dict:
    msp = make_msp_admin(email="fuzz-msp@example.test")
    make_msp_admin(email="fuzz-msp2@example.test")
    acme = TenantFactory(slug="acme", name="Acme Research", max_gpus=4)
    TenantFactory(slug="globex", name="Globex Health")
    admin = MembershipFactory(tenant=acme, role=TenantRole.TENANT_ADMIN,
                              user=UserFactory(email="fuzz-admin@acme.test", totp=True)).user
    developer = MembershipFactory(tenant=acme, role=TenantRole.DEVELOPER,
                                  user=UserFactory(email="fuzz-dev@acme.test"))
    invitation, _ = tenant_services.invitation_create(actor=admin, tenant=acme,
                                                      email="new@acme.test",
                                                      role=TenantRole.VIEWER)
    key, _ = gateway_services.apikey_create(actor=admin, tenant=acme, name="ci")
    model = catalog_services.model_create(actor=msp, slug="chat-small", name="Chat Small",
                                          task="chat")
    catalog_services.price_set(actor=msp, model=model, input_per_million=Decimal("0.5"),
                               output_per_million=Decimal("1.5"))
    catalog_services.model_set_entitlements(actor=msp, model=model, all_tenants=True)
    version = published_version(model, version="1.0")
    draft = catalog_services.version_create(actor=msp, model=model, version="2.0")
    upload = catalog_services.upload_session_create(actor=msp, version=draft, filename="image.tar",
                                        size_bytes=4096)
    budget = budget_create(actor=admin, tenant=acme, name="Monthly", amount=Decimal("100"),
                           currency="EUR")
    served_at = (datetime.now(UTC) - timedelta(days=40)).timestamp()
    usage_records_ingest(events=[{
        "request_id": f"req_fuzz_{n}", "ts": served_at, "tenant_id": acme.pk,
        "key_id": key.pk, "model_id": model.pk, "model": model.slug, "deployment_id": None,
        "endpoint": "chat/completions", "status": 200, "streamed": False,
        "input_tokens": 10, "output_tokens": 5, "estimated": False, "latency_ms": 3,
        "ttft_ms": 3} for n in range(3)])
    last_month = (date.today().replace(day=1) - timedelta(days=1)).replace(day=1)
    statement_close(actor=msp, tenant=acme, period_start=last_month)
    cluster = deployment_services.cluster_create(
        actor=msp, name="fra-gpu-1", api_url=kube.url, jurisdiction="DE",
        credentials=kube.token, gpu_capacity={"NVIDIA-L4": 4}, default_mode="Standard")
    deployment = deployment_services.kserve_deployment_create(
        actor=msp, deployment=deployment_services.kserve_deployment_build(
            version=version, cluster=cluster, tenant=acme, runtime="kserve-vllmserver",
            cpu="2", memory="8Gi"))
    return {
        "tenant": acme, "member": developer, "invitation": invitation, "key": key,
        "model": model, "version": version, "upload": upload, "budget": budget,
        "month": last_month.strftime("%Y-%m"), "cluster": cluster, "deployment": deployment,
        "seq": AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first(),
        "sessions": {"msp_admin": _signed_in(msp.email),
                     "tenant_admin": _signed_in(admin.email)},
    }


def _known_values(world: dict, path: str) -> dict:
    """Real values for each path parameter of `path`."""
    values = {"slug": world["tenant"].slug if path.startswith("/api/tenants/")
              else world["model"].slug,
              "tenant_slug": world["tenant"].slug, "version": world["version"].version,
              "month": world["month"], "seq": world["seq"]}
    ids = {"/api/clusters/": world["cluster"].pk, "/api/deployments/": world["deployment"].pk,
           "/members/": world["member"].pk, "/invitations/": world["invitation"].pk,
           "/keys/": world["key"].pk, "/budgets/": world["budget"].pk,
           "/api/uploads/": str(world["upload"].pk)}
    for fragment, value in ids.items():
        if fragment in path:
            values["id"] = value
    return values


def _point_at_real_objects(case, world: dict) -> None:
    """Three in four generated path parameters are swapped for real ones (deterministically,
    by the generated value), so most requests get past the 404."""
    known = _known_values(world, case.operation.path)
    for name, value in list((case.path_parameters or {}).items()):
        if name in known and zlib.crc32(repr(value).encode()) % 4:
            case.path_parameters[name] = known[name]


def _signed_in(email: str) -> dict[str, str]:
    """Cookies of a session that signed in with password and authenticator code."""
    client = Client()
    response = client.post("/accounts/login/", {"login": email, "password": PASSWORD})
    assert response.status_code == 302, response.content[:500]
    if "/2fa/" in response["Location"]:
        response = client.post(response["Location"], {"code": totp_code(TOTP_SECRET)})
        assert response.status_code == 302, response.content[:500]
    client.get("/")
    session, csrf = client.cookies["sessionid"].value, client.cookies.get("csrftoken")
    return {"sessionid": session, "csrftoken": csrf.value}


APP = WSGIHandler()


@pytest.fixture
def send(world, db):
    """A function that sends a case to the portal as one of the people signed in beforehand."""
    # As the test client does: the test's connection lives in its transaction, so the end of
    # a request must not close it.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)

    def send_as(who: str, case) -> None:
        _point_at_real_objects(case, world)
        cookies = world["sessions"][who]
        case.call_and_validate(app=APP, cookies=cookies,
                               headers={"X-CSRFToken": cookies["csrftoken"]})

    yield send_as
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@msp_schema.parametrize()
@SETTINGS
def test_api_as_msp_admin(case, send):
    send("msp_admin", case)


@tenant_schema.parametrize()
@SETTINGS
def test_api_as_tenant_admin(case, send):
    send("tenant_admin", case)


def test_the_fuzzed_schema_is_the_one_served(client, msp_admin):
    client.force_login(msp_admin)
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    assert json.loads(response.content) == SERVED
