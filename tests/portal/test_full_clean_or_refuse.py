"""`portal.api.full_clean_or_refuse`: a service's full_clean becomes the one refusal type,
with the field errors kept (and the whole-row ones under `__all__`)."""

import pytest

from models_catalog.models import Model
from portal.api import ApplicationError, full_clean_or_refuse

pytestmark = pytest.mark.django_db


def test_field_errors_are_kept():
    with pytest.raises(ApplicationError) as caught:
        full_clean_or_refuse(Model(slug="Bad slug", name="", task="chat"))
    assert set(caught.value.field_errors) == {"slug", "name"}
    assert all(caught.value.field_errors.values())
    assert caught.value.message  # one sentence for a flash message or the API's detail


def test_a_valid_instance_passes():
    full_clean_or_refuse(Model(slug="fine", name="Fine", task="chat"))


def test_refusal_keeps_field_errors_and_reads_like_a_validation_error():
    import pickle

    from django.core.exceptions import ValidationError

    from portal.api import refusal

    refused = refusal({"name": "Taken.", "amount": ["Too big.", "Not a number."]})
    assert isinstance(refused, ApplicationError) and isinstance(refused, ValidationError)
    assert refused.field_errors == {"name": ["Taken."], "amount": ["Too big.", "Not a number."]}
    assert refused.message_dict == refused.field_errors
    assert refused.message == "Taken. Too big. Not a number." == str(refused)
    plain = refusal("There is no canary to promote.")
    assert plain.field_errors == {} and plain.messages == ["There is no canary to promote."]
    again = pickle.loads(pickle.dumps(plain))
    assert type(again) is ApplicationError and again.message == plain.message
