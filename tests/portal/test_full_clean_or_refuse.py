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
