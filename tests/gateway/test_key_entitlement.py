"""`apikey_create` itself refuses to limit a key to a model the tenant may not use; the API
and the command pass its refusal on (the page's form offers only the tenant's models)."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from gateway import services
from gateway.models import ApiKey
from models_catalog.models import Model, ModelLifecycle
from portal.api import ApplicationError

pytestmark = pytest.mark.django_db


@pytest.fixture
def models(tenant, other_tenant):
    """open: every tenant; ours: entitled to acme; theirs: only globex; retired: gone."""
    made = {
        "open": Model.objects.create(slug="open-chat", name="Open", task="chat"),
        "ours": Model.objects.create(slug="acme-chat", name="Ours", task="chat",
                                     available_to_all_tenants=False),
        "theirs": Model.objects.create(slug="globex-chat", name="Theirs", task="chat",
                                       available_to_all_tenants=False),
        "retired": Model.objects.create(slug="old-chat", name="Old", task="chat",
                                        lifecycle=ModelLifecycle.RETIRED),
    }
    made["ours"].entitled_tenants.add(tenant)
    made["theirs"].entitled_tenants.add(other_tenant)
    return made


@pytest.mark.parametrize("refused", ["theirs", "retired"])
def test_the_service_refuses_a_model_the_tenant_may_not_use(tenant, tenant_admin, models,
                                                            refused):
    with pytest.raises(ApplicationError) as caught:
        services.apikey_create(actor=tenant_admin, tenant=tenant, name="ci",
                               allowed_models=[models["open"], models[refused]])

    assert f"can't use: {models[refused].slug}" in caught.value.message
    assert models[refused].slug in caught.value.field_errors["allowed_models"][0]
    assert not ApiKey.objects.exists()


def test_the_service_takes_models_or_slugs_the_tenant_may_use(tenant, tenant_admin, models):
    key, _token = services.apikey_create(actor=tenant_admin, tenant=tenant, name="ci",
                                         allowed_models=[models["open"], "acme-chat"])

    assert sorted(key.allowed_models.values_list("slug", flat=True)) == ["acme-chat",
                                                                         "open-chat"]


def test_the_api_answers_400_naming_the_field(client, tenant, tenant_admin, models):
    client.force_login(tenant_admin)

    response = client.post("/api/tenants/acme/keys/", {"name": "ci", "allowed_models": [
        "open-chat", "globex-chat", "no-such-model"]}, content_type="application/json")

    assert response.status_code == 400
    assert "globex-chat, no-such-model" in response.json()["errors"]["allowed_models"][0]
    assert not ApiKey.objects.exists()


def test_the_command_says_which_models_the_tenant_cant_use(tenant, models):
    with pytest.raises(CommandError, match="can't use: globex-chat"):
        call_command("apikey_create", "--tenant", "acme", "--name", "ci", "--models",
                     "open-chat,globex-chat", stdout=StringIO())
    assert not ApiKey.objects.exists()

