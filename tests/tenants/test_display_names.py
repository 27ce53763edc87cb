"""Names people type can't carry invisible text-direction or control characters: every page
form answers with a field error, every API with 400 and the field, commands with an error.

QA's case: an API key named "CI \u202eevil\u202c" was listed as "CI live"."""

import json
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from billing.models import Budget, WebhookEndpoint
from deployments.models import Backend, Deployment, DeploymentStatus
from gateway.models import ApiKey
from models_catalog.models import Model
from portal.text import validate_display_name
from tenants.models import Tenant

SPOOF = "CI \u202eevil\u202c"
MESSAGE = "Remove the invisible text-direction character (U+202E)"

pytestmark = pytest.mark.django_db


# --- the validator ----------------------------------------------------------------------------

@pytest.mark.parametrize("char", [
    "\u202a", "\u202b", "\u202c", "\u202d", "\u202e",  # embeddings, overrides, pop
    "\u2066", "\u2067", "\u2068", "\u2069",  # isolates
    "\u200e", "\u200f", "\u061c",  # marks
])
def test_bidi_controls_are_refused_by_name(char):
    with pytest.raises(ValidationError) as exc:
        validate_display_name(f"Finance {char}team")
    assert exc.value.messages == [
        f"Remove the invisible text-direction character (U+{ord(char):04X}) — names are shown "
        "exactly as typed."]


@pytest.mark.parametrize("char, words", [
    ("\x00", "control character"), ("\t", "control character"), ("\n", "control character"),
    ("\x1b", "control character"), ("\x7f", "control character"), ("\x85", "control character"),
    ("\u2028", "control character"), ("\u2029", "control character"),
    ("\u200b", "invisible character"), ("\ufeff", "invisible character"),
    ("\u2060", "invisible character"), ("\u00ad", "invisible character"),
    ("\U000e0041", "invisible character"), ("\ud800", "invisible character"),
])
def test_controls_and_invisible_characters_are_refused(char, words):
    with pytest.raises(ValidationError) as exc:
        validate_display_name(f"a{char}b")
    assert words in exc.value.messages[0]
    assert f"U+{ord(char):04X}" in exc.value.messages[0]


@pytest.mark.parametrize("name", [
    "CI pipeline", "Équipe données", "مالية الفريق", "צוות כספים", "财务团队", "Käse & Co. (EU)",
    "می\u200cخواهم",  # Persian needs the zero-width non-joiner
    "team \U0001f468\u200d\U0001f469\u200d\U0001f467",  # an emoji family: zero-width joiners
    "",
])
def test_ordinary_names_in_any_script_pass(name):
    validate_display_name(name)


# --- page forms: a field error, nothing saved ------------------------------------------------

def _external(tenant=None):
    model = Model.objects.create(slug="local-llm", name="Local LLM", task="chat")
    return Deployment.objects.create(model=model, tenant=tenant, backend=Backend.EXTERNAL,
                                     base_url="http://127.0.0.1:9/v1", name="local",
                                     status=DeploymentStatus.READY)


def _page_cases():
    return [
        ("tenant create", "msp_admin", lambda w: "/msp/tenants/new/",
         lambda w: {"name": SPOOF, "slug": "new-co", "contact_email": "a@new.test",
                    "jurisdiction": "DE", "max_gpus": 0, "max_api_keys": 5,
                    "budget_currency": "EUR"},
         lambda w: Tenant.objects.filter(slug="new-co").exists()),
        ("tenant edit", "msp_admin", lambda w: f"/msp/tenants/{w.tenant.slug}/edit/",
         lambda w: {"name": SPOOF, "contact_email": w.tenant.contact_email,
                    "jurisdiction": "DE", "max_gpus": 0, "max_api_keys": 5,
                    "budget_currency": "EUR"},
         lambda w: Tenant.objects.filter(name=SPOOF).exists()),
        ("api key", "tenant_admin", lambda w: f"/t/{w.tenant.slug}/keys/new/",
         lambda w: {"name": SPOOF}, lambda w: ApiKey.objects.exists()),
        ("budget", "tenant_admin", lambda w: f"/t/{w.tenant.slug}/budgets/new/",
         lambda w: {"name": "Spend \u202e", "unit": "tokens", "amount": "1000",
                    "period": "monthly", "thresholds": "50, 100", "action": "notify"},
         lambda w: Budget.objects.exists()),
        ("webhook", "tenant_admin", lambda w: f"/t/{w.tenant.slug}/webhooks/new/",
         lambda w: {"name": SPOOF, "url": "https://hooks.example.test/x"},
         lambda w: WebhookEndpoint.objects.exists()),
        ("model card", "msp_admin", lambda w: f"/catalog/{w.model.slug}/card/",
         lambda w: {"name": SPOOF, "model_card": "card", "license": "Apache-2.0"},
         lambda w: Model.objects.filter(name=SPOOF).exists()),
        ("catalog upload", "msp_admin", lambda w: "/catalog/upload/",
         lambda w: {"slug": "new-model", "name": SPOOF, "task": "chat"},
         lambda w: Model.objects.filter(slug="new-model").exists()),
        ("external endpoint", "msp_admin", lambda w: "/msp/deployments/external/new/",
         lambda w: {"model": "", "model_slug": "new-llm", "task": "chat",
                    "base_url": "http://127.0.0.1:9/v1", "upstream_model": "",
                    "upstream_api_key": "", "tenant": "", "name": SPOOF},
         lambda w: Deployment.objects.filter(name=SPOOF).exists()
         or Model.objects.filter(slug="new-llm").exists()),
        ("external endpoint edit", "msp_admin",
         lambda w: f"/msp/deployments/{w.deployment.pk}/endpoint/",
         lambda w: {"base_url": w.deployment.base_url, "upstream_model": "", "name": SPOOF,
                    "upstream_api_key": ""},
         lambda w: Deployment.objects.filter(name=SPOOF).exists()),
    ]


class World:
    pass


@pytest.fixture
def world(tenant, tenant_admin, msp_admin, settings):
    settings.ALLOWED_JURISDICTIONS = ["DE"]
    w = World()
    w.tenant, w.people = tenant, {"tenant_admin": tenant_admin, "msp_admin": msp_admin}
    w.model = Model.objects.create(slug="shared-chat", name="Shared chat", task="chat")
    w.deployment = _external()
    return w


@pytest.mark.parametrize("case", _page_cases(), ids=lambda c: c[0])
def test_page_forms_show_a_field_error(client, world, case):
    _label, person, url, data, saved = case
    client.force_login(world.people[person])
    response = client.post(url(world), data(world))
    assert response.status_code in (200, 422), response.status_code
    form = response.context.get("form") or response.context["card_form"]
    assert "name" in form.errors, form.errors
    assert MESSAGE in " ".join(form.errors["name"])
    assert not saved(world)


# --- APIs: 400 with the field ------------------------------------------------------------------

def _api_cases():
    return [
        ("tenant create", "post", lambda w: "/api/tenants/",
         {"name": SPOOF, "slug": "new-co", "contact_email": "a@new.test", "jurisdiction": "DE"}),
        ("tenant update", "patch", lambda w: f"/api/tenants/{w.tenant.slug}/", {"name": SPOOF}),
        ("api key", "post", lambda w: f"/api/tenants/{w.tenant.slug}/keys/", {"name": SPOOF}),
        ("budget create", "post", lambda w: f"/api/tenants/{w.tenant.slug}/budgets/",
         {"name": SPOOF, "unit": "tokens", "amount": "5000", "action": "block"}),
        ("budget update", "patch", lambda w: f"/api/tenants/{w.tenant.slug}/budgets/{w.budget}/",
         {"name": SPOOF}),
        ("model create", "post", lambda w: "/api/models/",
         {"slug": "new-model", "name": SPOOF, "task": "chat"}),
        ("external endpoint", "post", lambda w: "/api/deployments/external/",
         {"model": "new-llm", "task": "chat", "base_url": "http://127.0.0.1:9/v1",
          "name": SPOOF}),
        ("deployment create", "post", lambda w: "/api/deployments/",
         {"version": 999999, "cluster": 999999, "name": SPOOF}),
        ("external endpoint update", "patch",
         lambda w: f"/api/deployments/{w.deployment.pk}/endpoint/", {"name": SPOOF}),
    ]


@pytest.mark.parametrize("case", _api_cases(), ids=lambda c: c[0])
def test_apis_answer_400_with_the_field(client, world, case):
    from billing.budgets import services as budgets
    world.budget = budgets.budget_create(
        actor=world.people["msp_admin"], tenant=world.tenant, name="Monthly", unit="tokens",
        amount=Decimal(1000)).pk
    _label, method, url, body = case
    client.force_login(world.people["msp_admin"])
    response = getattr(client, method)(url(world), json.dumps(body),
                                       content_type="application/json")
    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert MESSAGE in " ".join(errors["name"]), errors
    assert not Tenant.objects.filter(name=SPOOF).exists()
    assert not ApiKey.objects.filter(name=SPOOF).exists()
    assert not Budget.objects.filter(name=SPOOF).exists()
    assert not Model.objects.filter(name=SPOOF).exists()
    assert not Deployment.objects.filter(name=SPOOF).exists()


# --- commands ------------------------------------------------------------------------------------

def test_apikey_create_command_refuses(tenant):
    with pytest.raises(CommandError, match=r"U\+202E"):
        call_command("apikey_create", "--tenant", tenant.slug, "--name", SPOOF)
    assert not ApiKey.objects.exists()


def test_endpoint_register_command_refuses(db):
    with pytest.raises(CommandError, match=r"U\+202E"):
        call_command("endpoint_register", "--model", "local-llm", "--task", "chat",
                     "--base-url", "http://127.0.0.1:9/v1", "--name", SPOOF)
    assert not Deployment.objects.exists()
