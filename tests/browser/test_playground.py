"""The playground in a real browser against the real ASGI server (pages and /v1 together)."""

import pytest
import requests
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from playwright.sync_api import expect

from billing.models import UsageRecord
from deployments import services as deployment_services
from models_catalog import services as catalog_services
from tenants.models import TenantRole
from tests.factories import PASSWORD, MembershipFactory, UserFactory
from tests.support.browser import ForeignRequests, new_page, sign_in
from tests.support.gateway_fixtures import drained, wait_for
from tests.support.processes import start_upstream, stop

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_developer_chats_with_a_model_through_the_gateway(browser, gateway_server, served):
    developer = MembershipFactory(tenant=served.tenant, role=TenantRole.DEVELOPER,
                                  user=UserFactory(email="dev@acme.test")).user
    # The server process hashes with the production hasher, not the suite's fast one.
    developer.password = PBKDF2PasswordHasher().encode(PASSWORD, "playgroundsalt")
    developer.save(update_fields=["password"])
    page = new_page(browser, gateway_server.url)
    requests_seen = ForeignRequests(page, gateway_server.url)
    try:
        sign_in(page, developer.email, PASSWORD)
        page.get_by_role("link", name="Playground").click()
        expect(page.locator("#pg-model")).to_have_value("chat-small")
        page.fill("#pg-message", "Hello from the browser")
        page.get_by_role("button", name="Send").click()
        answer = page.locator(".turn-assistant .turn-text")
        expect(answer).to_have_text("Sovereign models answer from inside the boundary .")
        expect(page.locator("#pg-status")).to_contain_text("4 prompt + 8 completion tokens")
        # What the playground key has left follows the message (an htmx partial).
        expect(page.locator("#quota")).to_contain_text("This key (Playground)")
        assert requests_seen.foreign == []
    finally:
        page.context.close()
    assert drained(1) == 1
    record = UsageRecord.objects.get()
    assert (record.streamed, record.input_tokens, record.output_tokens) == (True, 4, 8)
    assert record.api_key_id == developer.api_keys.get(name="Playground").pk


def test_key_form_errors_show_in_place(browser, gateway_server, served):
    """Forms posted by htmx answer 422 with their errors; the page must show them."""
    developer = MembershipFactory(tenant=served.tenant, role=TenantRole.DEVELOPER,
                                  user=UserFactory(email="dev2@acme.test")).user
    developer.password = PBKDF2PasswordHasher().encode(PASSWORD, "keyformsalt")
    developer.save(update_fields=["password"])
    page = new_page(browser, gateway_server.url)
    try:
        sign_in(page, developer.email, PASSWORD)
        page.goto(f"{gateway_server.url}/t/{served.tenant.slug}/keys/")
        page.fill("input[name=name]", "ci")
        page.fill("textarea[name=allowed_networks]", "not-a-network")
        page.get_by_role("button", name="Create key").click()
        expect(page.locator("#keys .errorlist")).to_contain_text("not-a-network")
        expect(page.locator("input[name=name]")).to_have_value("ci")  # nothing typed is lost
    finally:
        page.context.close()


def test_the_playground_skips_keep_alive_comments_in_the_stream(browser, gateway_server,
                                                                 served):
    """Servers such as llama-cpp-python's send SSE comments (": ping") between chunks: the
    playground shows the answer, not a JSON error."""
    process, base = start_upstream("--models", "chat-ping", "--ping")
    try:
        model = catalog_services.model_create(actor=served.actor, slug="chat-ping",
                                              name="Chat Ping", task="chat")
        deployment_services.external_endpoint_register(actor=served.actor, model=model,
                                                       base_url=base)
        developer = MembershipFactory(tenant=served.tenant, role=TenantRole.DEVELOPER,
                                      user=UserFactory(email="dev3@acme.test")).user
        developer.password = PBKDF2PasswordHasher().encode(PASSWORD, "pingsalt")
        developer.save(update_fields=["password"])
        assert wait_for(lambda: "chat-ping" in requests.get(
            served.base + "/models", timeout=5,
            headers={"Authorization": f"Bearer {served.token}"}).text)
        page = new_page(browser, gateway_server.url)
        try:
            sign_in(page, developer.email, PASSWORD)
            page.goto(f"{gateway_server.url}/t/{served.tenant.slug}/playground/")
            page.select_option("#pg-model", "chat-ping")
            page.fill("#pg-message", "Hello")
            page.get_by_role("button", name="Send").click()
            answer = page.locator(".turn-assistant .turn-text")
            expect(answer).to_have_text("Sovereign models answer from inside the boundary .")
        finally:
            page.context.close()
    finally:
        stop(process)
