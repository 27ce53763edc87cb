"""On a phone-sized screen (390 px) tenant pages scroll vertically only: wide tables scroll
inside their own box."""

import pytest

from gateway import services as gateway_services
from tests.factories import PASSWORD, MembershipFactory, TenantFactory, UserFactory
from tests.support.browser import sign_in

pytestmark = pytest.mark.browser


def test_tenant_pages_fit_a_phone_screen(page, transactional_db):
    tenant = TenantFactory(slug="acme", name="Acme Research")
    admin = MembershipFactory(tenant=tenant, role="tenant_admin",
                              user=UserFactory(email="admin@acme.test")).user
    for name in ("CI pipeline", "Notebook", "Batch jobs"):
        gateway_services.apikey_create(actor=admin, tenant=tenant, name=name, owner=admin)
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, admin.email, PASSWORD)
    for path in ("/t/acme/", "/t/acme/keys/", "/t/acme/members/", "/t/acme/budgets/",
                 "/t/acme/deployments/", "/t/acme/usage/"):
        page.goto(path)
        page.wait_for_load_state("networkidle")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{path} is {width} px wide"
    # The keys table itself is wider than the screen: it scrolls in its box.
    page.goto("/t/acme/keys/")
    wrap = page.locator(".table-wrap").first
    assert wrap.evaluate("e => e.scrollWidth > e.clientWidth")
