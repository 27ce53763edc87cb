import re

import pytest
from playwright.sync_api import expect

from audit.models import AuditEvent
from tenants import services
from tenants.models import Invitation, Membership, PlatformRole, PlatformRoleGrant, Tenant
from tests.factories import PASSWORD, TOTP_SECRET, MembershipFactory, TenantFactory, UserFactory
from tests.support.browser import ForeignRequests, sign_in
from tests.totp import totp_code

pytestmark = pytest.mark.browser


def test_msp_admin_sets_up_mfa_creates_a_tenant_and_invites_a_member(page, transactional_db):
    admin = UserFactory(email="first-msp@example.test")
    PlatformRoleGrant.objects.create(user=admin, role=PlatformRole.MSP_ADMIN)

    sign_in(page, admin.email, PASSWORD)
    # No MFA yet: the portal insists on it before anything else.
    expect(page.get_by_text("MSP admins must use two-factor authentication")).to_be_visible()
    if "reauthenticate" in page.url:
        page.fill("input[name=password]", PASSWORD)
        page.click("main button[type=submit]")
    secret = page.input_value("#authenticator_secret")
    page.fill("input[name=code]", totp_code(secret))
    page.click("main button[type=submit]")
    page.wait_for_load_state()

    page.goto("/")
    expect(page).to_have_url(re.compile(r"/msp/tenants/$"))
    expect(page.get_by_text("No tenants yet")).to_be_visible()
    page.get_by_role("link", name="New tenant").first.click()
    page.fill("#id_name", "Initech Labs")
    page.fill("#id_slug", "initech")
    page.fill("#id_contact_email", "it@initech.test")
    page.fill("#id_jurisdiction", "DE")
    page.fill("#id_max_gpus", "4")
    page.get_by_role("button", name="Create tenant").click()
    expect(page.get_by_role("heading", name=re.compile("Initech Labs"))).to_be_visible()
    expect(page.get_by_text("Tenant Initech Labs created")).to_be_visible()

    page.fill("#id_email", "newcomer@initech.test")
    page.select_option("#id_role", "tenant_admin")
    page.get_by_role("button", name="Send invitation").click()
    # HTMX swaps the members section in place.
    expect(page.locator("#members").get_by_text("Invitation sent to newcomer@initech.test")
           ).to_be_visible()
    expect(page.locator("#invitation-" + str(Invitation.objects.get().pk))).to_contain_text(
        "Tenant admin")

    tenant = Tenant.objects.get(slug="initech")
    assert tenant.max_gpus == 4
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"auth.mfa_added", "tenant.created", "invitation.created"} <= actions

    page.get_by_role("link", name="Audit").click()
    expect(page.locator("#event-table")).to_contain_text("invitation.created")


def test_invited_person_signs_up_and_joins(page, transactional_db):
    tenant = TenantFactory(slug="acme", name="Acme Research")
    _invitation, token = services.invitation_create(
        actor="system:test", tenant=tenant, email="joiner@acme.test", role="developer")

    page.goto(f"/invitations/{token}/")
    expect(page.get_by_role("heading", name="Join Acme Research")).to_be_visible()
    page.get_by_role("link", name="Create account").click()
    expect(page.locator("input[name=email]")).to_have_value("joiner@acme.test")
    page.fill("input[name=password1]", "A-long-enough-passphrase-7")
    page.fill("input[name=password2]", "A-long-enough-passphrase-7")
    page.click("main button[type=submit]")
    page.get_by_role("button", name="Accept and join").click()
    expect(page).to_have_url(re.compile(r"/t/acme/$"))
    expect(page.get_by_text("Welcome to Acme Research")).to_be_visible()
    assert Membership.objects.get(user__email="joiner@acme.test").role == "developer"


def test_person_in_two_tenants_switches_between_them(page, transactional_db):
    acme = TenantFactory(slug="acme", name="Acme Research")
    globex = TenantFactory(slug="globex", name="Globex Health")
    person = MembershipFactory(tenant=acme, role="developer").user
    MembershipFactory(tenant=globex, user=person, role="viewer")

    sign_in(page, person.email, PASSWORD)
    expect(page.locator("main h1")).to_contain_text("Acme Research")
    page.locator("#tenant-switcher summary").click()
    page.locator("#tenant-switcher").get_by_role("menuitem", name="Globex Health").click()
    expect(page.locator("main h1")).to_contain_text("Globex Health")
    expect(page.locator("#tenant-switcher summary")).to_contain_text("Viewer")
    # A viewer sees members but no controls to change them.
    page.get_by_role("link", name="Members", exact=True).click()
    expect(page.locator("main h1")).to_have_text("Members")
    expect(page.locator("#members")).to_contain_text(person.email)
    expect(page.get_by_role("button", name="Send invitation")).to_have_count(0)
    # The choice is remembered for the next visit to the start page.
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/t/globex/$"))


def test_pages_load_nothing_from_other_hosts(page, live_server, transactional_db):
    """Sovereignty: every request made while loading each page goes to the portal itself."""
    tenant = TenantFactory(slug="acme", name="Acme Research")
    admin = UserFactory(email="msp@example.test", totp=True)
    PlatformRoleGrant.objects.create(user=admin, role=PlatformRole.MSP_ADMIN)
    MembershipFactory(tenant=tenant, user=admin, role="tenant_admin")
    requests = ForeignRequests(page, live_server.url)

    page.goto("/accounts/login/")
    sign_in(page, admin.email, PASSWORD, totp_secret=TOTP_SECRET)
    pages = ["/msp/tenants/", "/msp/tenants/new/", f"/msp/tenants/{tenant.slug}/",
             f"/msp/tenants/{tenant.slug}/edit/", f"/t/{tenant.slug}/",
             f"/t/{tenant.slug}/members/", "/audit/", "/accounts/email/",
             "/accounts/password/change/", "/accounts/2fa/", "/api/docs/",
             "/no-such-page/"]
    for path in pages:
        page.goto(path)
        page.wait_for_load_state("networkidle")
    assert requests.foreign == []
    # The check is real: pages did load their stylesheet, scripts and the docs' assets.
    assert any(url.endswith("/static/css/portal.css") for url in requests.seen)
    assert any("htmx" in url for url in requests.seen)
    assert any("swagger-ui" in url for url in requests.seen)
