"""The upload endpoint (the REST API, which the wizard's script uses too) answers well-formed
JSON that is not an object (an array, null, a string, a number), or a size that is not a
number, with a 400 that says what to send — never a 500."""

import json
import uuid

import pytest

from models_catalog import services
from models_catalog.models import UploadSession

pytestmark = pytest.mark.django_db

BODIES = ["[]", "null", '"car.tar"', "1", "[{}]", '{"filename": "car.tar"}',
          '{"filename": "car.tar", "size": "big"}', '{"filename": "car.tar", "size": 1e400}',
          '{"filename": "car.tar", "size": [1]}']


@pytest.fixture
def version(registry_settings, msp_admin):
    model = services.model_create(actor=msp_admin, slug=f"up-{uuid.uuid4().hex[:8]}",
                                  name="Upload", task="chat")
    return services.version_create(actor=msp_admin, model=model, version="1.0")


@pytest.mark.parametrize("body", BODIES)
def test_the_api_answers_400_with_field_errors(client, msp_admin, version, body):
    client.force_login(msp_admin)
    response = client.post(f"/api/models/{version.model.slug}/versions/1.0/upload/", body,
                           content_type="application/json")
    assert response.status_code == 400
    assert response.json()["errors"]
    assert not UploadSession.objects.exists()


def test_a_proper_object_still_starts_an_upload(client, msp_admin, version):
    client.force_login(msp_admin)
    response = client.post(f"/api/models/{version.model.slug}/versions/1.0/upload/",
                           json.dumps({"filename": "car.tar", "size_bytes": 1024}),
                           content_type="application/json")
    assert response.status_code == 201 and response.json()["size_bytes"] == 1024
