"""The catalog's services refuse with one type, `ApplicationError`, whose field errors name the
fields — also for what the models' own validators refuse (`full_clean`) — so forms show each
message on its field and the API answers 400 with them."""

from decimal import Decimal

import pytest

from models_catalog import services
from portal.api import ApplicationError

pytestmark = pytest.mark.django_db


@pytest.fixture
def model(msp_admin):
    return services.model_create(actor=msp_admin, slug="refusals", name="Refusals", task="chat")


REFUSED = [
    ("slug", lambda actor, model: services.model_create(
        actor=actor, slug="Not a slug!", name="X", task="chat")),
    ("task", lambda actor, model: services.model_create(
        actor=actor, slug="no-task", name="X", task="painting")),
    ("currency", lambda actor, model: services.price_set(
        actor=actor, model=model, input_per_million=Decimal(1), output_per_million=Decimal(1),
        currency="eur")),
    ("lifecycle", lambda actor, model: services.model_set_lifecycle(
        actor=actor, model=model, lifecycle="gone")),
    ("context_length", lambda actor, model: services.model_update_card(
        actor=actor, model=model, context_length=-1)),
    ("version", lambda actor, model: services.version_create(
        actor=actor, model=model, version="-starts-with-a-dash")),
    ("tenants", lambda actor, model: services.model_set_entitlements(
        actor=actor, model=model, all_tenants=False, tenants=[])),
]


@pytest.mark.parametrize("field,refused", REFUSED, ids=[r[0] for r in REFUSED])
def test_services_refuse_with_application_error_and_field_errors(msp_admin, model, field,
                                                                 refused):
    with pytest.raises(ApplicationError) as caught:
        refused(msp_admin, model)
    assert field in caught.value.field_errors and caught.value.message


def test_a_whole_row_refusal_is_kept_too(msp_admin, model):
    from django.utils import timezone

    start = timezone.now()
    services.price_set(actor=msp_admin, model=model, input_per_million=Decimal(1),
                       output_per_million=Decimal(2), effective_from=start)
    with pytest.raises(ApplicationError) as caught:
        services.price_set(actor=msp_admin, model=model, input_per_million=Decimal(3),
                           output_per_million=Decimal(4), effective_from=start)
    assert "__all__" in caught.value.field_errors


def test_the_wizard_shows_a_model_refusal_on_its_field(client, msp_admin):
    client.force_login(msp_admin)
    # The form takes underscores in a slug; the model does not.
    response = client.post("/catalog/upload/", {"slug": "with_underscore", "name": "X",
                                                "task": "chat", "version": "1.0"})
    assert response.status_code == 422
    assert "slug" in response.context["form"].errors
    assert not response.context["form"].non_field_errors()


def test_the_api_answers_a_model_refusal_with_its_field(client, msp_admin, model):
    client.force_login(msp_admin)
    response = client.post("/api/models/", {"slug": "refusals", "name": "Again",
                                            "task": "chat"}, content_type="application/json")
    assert response.status_code == 400
    assert "slug" in response.json()["errors"]
    assert "already exists" in response.json()["detail"]
