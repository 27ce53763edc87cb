"""One URL, two answers: the whole page, or for htmx the fragment it swaps in — decided in one
place (`portal.htmx`). The sidebar is a table (`portal.navigation`) that a fragment never
pays for."""

import re
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from deployments.models import Backend, Deployment, DeploymentStatus
from tests.factories import published_version

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
HTMX = {"HTTP_HX_REQUEST": "true"}
BOOSTED = {"HTTP_HX_REQUEST": "true", "HTTP_HX_BOOSTED": "true"}


@pytest.fixture
def external_deployment(tenant):
    version = published_version(version="1.0")
    return Deployment.objects.create(model=version.model, tenant=tenant,
                                     backend=Backend.EXTERNAL, name="chat",
                                     base_url="http://127.0.0.1:1/v1",
                                     status=DeploymentStatus.PENDING)


# (URL, who asks, how the fragment starts)
PAGES = [
    ("/msp/tenants/", "msp_admin", '<div id="tenant-table"'),
    ("/audit/", "msp_admin", '<div id="event-table"'),
    ("/compliance/reports/", "msp_admin", '<div id="report-table"'),
    ("/msp/deployments/", "msp_admin", '<div id="deployment-table"'),
    ("/msp/deployments/new/", "msp_admin", '<div id="wizard"'),
    ("/msp/deployments/{deployment}/", "msp_admin", '<section id="deployment-status"'),
    ("/t/acme/keys/", "tenant_admin", '<div id="keys"'),
    ("/t/acme/budgets/", "tenant_admin", '<div id="budgets"'),
    ("/t/acme/usage/", "tenant_admin", '<div id="usage"'),
    ("/t/acme/usage/?range=oops", "tenant_admin", '<div id="usage"'),  # 422 with the errors
]


@pytest.mark.parametrize(("url", "who", "fragment"), PAGES)
def test_htmx_gets_the_fragment_and_a_boosted_or_plain_request_the_page(
        client, request, tenant, external_deployment, url, who, fragment):
    client.force_login(request.getfixturevalue(who))
    url = url.format(deployment=external_deployment.pk)

    partial = client.get(url, **HTMX)
    boosted = client.get(url, **BOOSTED)
    plain = client.get(url)

    body = re.sub(r"^(\s*\{%.*?%\}\s*|\s+)", "", partial.content.decode())
    assert body.startswith(fragment), body[:200]
    assert "<html" not in body
    for page in (boosted, plain):
        assert page.status_code == partial.status_code
        assert "<html" in page.content.decode() and fragment in page.content.decode()


def test_no_view_decides_page_or_partial_by_itself():
    """`request.htmx.boosted` is read in portal/htmx.py only."""
    apps = ["portal", "tenants", "deployments", "gateway", "billing", "audit", "models_catalog"]
    found = [f"{path.relative_to(ROOT)}:{number}"
             for app in apps for path in (ROOT / app).rglob("*.py")
             if path != ROOT / "portal/htmx.py"
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if "htmx.boosted" in line]
    assert found == []


def _queries_on(table: str, queries) -> list[str]:
    return [q["sql"] for q in queries if f'"{table}"' in q["sql"]]


def test_a_fragment_runs_no_navigation_query(client, tenant, tenant_admin):
    client.force_login(tenant_admin)

    with CaptureQueriesContext(connection) as fragment:
        assert client.get("/t/acme/keys/", **HTMX).status_code == 200
    with CaptureQueriesContext(connection) as page:
        assert client.get("/t/acme/keys/").status_code == 200

    assert _queries_on("billing_notification", fragment) == []
    assert len(_queries_on("billing_notification", page)) == 1  # the unread count, on pages


def _sidebar(client, url: str) -> list[str]:
    """The sidebar's links as "Label /url/", with a * for the current page."""
    html = client.get(url).content.decode()
    nav = html[html.index('<nav class="sidebar"'):html.index("</nav>")]
    return [f"{label} {href}{' *' if current else ''}" for href, current, label in re.findall(
        r'<a class="nav-link" href="([^"]+)"( aria-current="page")?>.*?<span>([^<]+)</span>',
        nav)]


TENANT_MENU = ["Overview /t/acme/", "Models /t/acme/models/", "Deployments /t/acme/deployments/",
               "Playground /t/acme/playground/", "API keys /t/acme/keys/",
               "Members /t/acme/members/", "Usage /t/acme/usage/", "Budgets /t/acme/budgets/",
               "Notifications /t/acme/notifications/", "Webhooks /t/acme/webhooks/",
               "Statements /t/acme/statements/", "Audit /t/acme/audit/"]
PLATFORM_MENU = ["Tenants /msp/tenants/", "Model catalog /catalog/",
                 "Deployments /msp/deployments/", "Clusters /msp/clusters/",
                 "LLM presets /msp/llm-presets/", "Audit /audit/",
                 "Checkpoints /compliance/checkpoints/", "Reports /compliance/reports/",
                 "Usage /msp/usage/", "Statements /msp/statements/"]


def _without(menu: list[str], *labels: str) -> list[str]:
    return [item for item in menu if item.split(" /")[0] not in labels]


@pytest.mark.parametrize(("who", "expected"), [
    ("tenant_admin", TENANT_MENU),
    ("developer", _without(TENANT_MENU, "Statements", "Audit")),
    ("viewer", _without(TENANT_MENU, "Playground", "Statements", "Audit")),
])
def test_each_tenant_role_sees_its_entries(client, request, who, expected):
    client.force_login(request.getfixturevalue(who))

    assert _sidebar(client, "/t/acme/members/") == [
        f"{item} *" if item.startswith("Members ") else item for item in expected]


def test_the_overview_is_current_on_its_own_page_only(client, tenant_admin):
    client.force_login(tenant_admin)

    assert _sidebar(client, "/t/acme/")[0] == "Overview /t/acme/ *"
    assert [item for item in _sidebar(client, "/t/acme/keys/") if item.endswith("*")] == [
        "API keys /t/acme/keys/ *"]


def test_platform_staff_see_the_platform_entries_their_roles_allow(client, msp_admin,
                                                                   compliance_officer, tenant):
    client.force_login(msp_admin)
    assert _sidebar(client, "/msp/clusters/") == [
        f"{item} *" if item.startswith("Clusters ") else item for item in PLATFORM_MENU]
    # On a tenant's page an MSP admin (no member) sees the tenant's entries above.
    assert _sidebar(client, "/t/acme/budgets/")[:len(TENANT_MENU)] == [
        f"{item} *" if item.startswith("Budgets ") else item for item in TENANT_MENU]

    client.force_login(compliance_officer)
    assert _sidebar(client, "/audit/") == [
        "Model catalog /catalog/", "Audit /audit/ *", "Checkpoints /compliance/checkpoints/",
        "Reports /compliance/reports/"]
