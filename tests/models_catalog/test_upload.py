"""Resumable chunked uploads (the wizard's script uses the REST API like any client): offsets,
a dropped connection, resume, limits."""

import io
import uuid

import pytest

from models_catalog import services
from models_catalog.models import UploadSession, UploadStatus
from portal.api import ApplicationError

pytestmark = pytest.mark.django_db

CHUNK = 64 * 1024


@pytest.fixture
def version(registry_settings, msp_admin):
    registry_settings.MODEL_UPLOAD_CHUNK_BYTES = CHUNK
    model = services.model_create(actor=msp_admin, slug=f"up-{uuid.uuid4().hex[:8]}",
                                  name="Upload", task="chat")
    return services.version_create(actor=msp_admin, model=model, version="1.0")


def _put(client, session, data: bytes, offset: int, total: int):
    return client.generic("PUT", session["url"], data,
                          content_type="application/octet-stream",
                          HTTP_CONTENT_RANGE=f"bytes {offset}-{offset + len(data) - 1}/{total}")


def test_an_interrupted_upload_resumes_from_the_reported_offset(client, msp_admin, version,
                                                                registry_settings):
    payload = bytes(range(256)) * (CHUNK * 6 // 256)  # six chunks
    client.force_login(msp_admin)
    url = f"/api/models/{version.model.slug}/versions/1.0/upload/"
    session = client.post(url, {"filename": "car.tar", "size_bytes": len(payload)},
                          content_type="application/json").json()
    assert session["received_bytes"] == 0
    for offset in range(0, 3 * CHUNK, CHUNK):  # half the chunks arrive
        response = _put(client, session, payload[offset:offset + CHUNK], offset, len(payload))
        assert response.status_code == 200, response.content
    # The connection drops in the middle of chunk 4: only whole chunks are kept.
    upload = UploadSession.objects.get(pk=session["id"])
    with pytest.raises(ApplicationError, match="resume from byte"):
        services.upload_chunk_append(session=upload, offset=3 * CHUNK, length=CHUNK,
                                     stream=io.BytesIO(payload[3 * CHUNK:3 * CHUNK + 100]))
    # The browser comes back: it asks where to resume (same file → same session).
    resumed = client.post(url, {"filename": "car.tar", "size_bytes": len(payload)},
                          content_type="application/json").json()
    assert resumed["id"] == session["id"] and resumed["received_bytes"] == 3 * CHUNK
    assert client.get(session["url"]).json()["received_bytes"] == 3 * CHUNK
    # A chunk sent from the wrong offset is refused with where the upload stands.
    response = _put(client, session, payload[:CHUNK], 0, len(payload))
    assert response.status_code == 409 and response.json()["received_bytes"] == 3 * CHUNK
    # Completing early is refused.
    assert client.post(session["complete_url"]).status_code == 400
    for offset in range(3 * CHUNK, len(payload), CHUNK):
        assert _put(client, session, payload[offset:offset + CHUNK], offset,
                    len(payload)).status_code == 200
    # The wizard's script goes to the version's page once it completed the upload.
    page = client.get(f"/catalog/{version.model.slug}/v/1.0/").content.decode()
    assert f'data-next-url="/catalog/{version.model.slug}/v/1.0/"' in page
    response = client.post(session["complete_url"])
    assert response.status_code == 200, response.content
    upload.refresh_from_db()
    assert upload.status == UploadStatus.RECEIVED
    stored = (registry_settings.MODEL_UPLOAD_DIR / f"{upload.pk}.tar").read_bytes()
    assert stored == payload


def test_bad_chunks_and_limits_are_refused(client, msp_admin, version, registry_settings):
    client.force_login(msp_admin)
    url = f"/api/models/{version.model.slug}/versions/1.0/upload/"
    registry_settings.MODEL_UPLOAD_MAX_BYTES = 1000
    response = client.post(url, {"filename": "big.tar", "size_bytes": 1001},
                           content_type="application/json")
    assert response.status_code == 400 and "MODEL_UPLOAD_MAX_BYTES" in response.json()["detail"]
    session = client.post(url, {"filename": "small.tar", "size_bytes": 10},
                          content_type="application/json").json()
    # Content-Range that doesn't match the body, and a chunk past the announced size.
    response = client.generic("PUT", session["url"], b"abc",
                              content_type="application/octet-stream",
                              HTTP_CONTENT_RANGE="bytes 0-9/10")
    assert response.status_code == 400 and "Content-Range" in response.json()["detail"]
    response = _put(client, session, b"x" * 11, 0, 11)
    assert response.status_code == 400 and "past the announced size" in response.json()["detail"]


def test_without_a_registry_the_wizard_says_so(client, msp_admin, settings):
    settings.REGISTRY_URL = ""
    client.force_login(msp_admin)
    response = client.get("/catalog/upload/")
    assert response.status_code == 200
    assert "No OCI registry is configured" in response.content.decode()
    model = services.model_create(actor=msp_admin, slug="noreg", name="No registry", task="chat")
    services.version_create(actor=msp_admin, model=model, version="1")
    page = client.get("/catalog/noreg/v/1/").content.decode()
    assert "archives can't be received" in page
    response = client.post("/api/models/noreg/versions/1/upload/",
                           {"filename": "a.tar", "size_bytes": 5},
                           content_type="application/json")
    assert response.status_code == 400 and "REGISTRY_URL" in response.json()["detail"]


def test_the_api_upload_resumes_too(client, msp_admin, version):
    client.force_login(msp_admin)
    base = f"/api/models/{version.model.slug}/versions/1.0/upload/"
    payload = b"z" * (CHUNK + 10)
    created = client.post(base, {"filename": "car.tar", "size_bytes": len(payload)},
                          content_type="application/json")
    assert created.status_code == 201
    upload_url = f"/api/uploads/{created.json()['id']}/"
    response = client.generic("PUT", upload_url, payload[:CHUNK],
                              content_type="application/octet-stream",
                              HTTP_CONTENT_RANGE=f"bytes 0-{CHUNK - 1}/{len(payload)}")
    assert response.status_code == 200 and response.json()["received_bytes"] == CHUNK
    again = client.post(base, {"filename": "car.tar", "size_bytes": len(payload)},
                        content_type="application/json")
    assert again.status_code == 200 and again.json()["received_bytes"] == CHUNK
    response = client.generic("PUT", upload_url, payload[:10],
                              content_type="application/octet-stream",
                              HTTP_CONTENT_RANGE=f"bytes 0-9/{len(payload)}")
    assert response.status_code == 409 and response.json()["received_bytes"] == CHUNK
    client.generic("PUT", upload_url, payload[CHUNK:], content_type="application/octet-stream",
                   HTTP_CONTENT_RANGE=f"bytes {CHUNK}-{len(payload) - 1}/{len(payload)}")
    done = client.post(upload_url + "complete/")
    assert done.status_code == 200 and done.json()["status"] == "received"


def test_another_file_restarts_an_interrupted_upload(msp_admin, version, registry_settings):
    first = services.upload_session_create(actor=msp_admin, version=version, filename="wrong.tar",
                                           size_bytes=100)
    services.upload_chunk_append(session=first, offset=0, length=10, stream=io.BytesIO(b"x" * 10))
    second = services.upload_session_create(actor=msp_admin, version=version, filename="right.tar",
                                            size_bytes=50)
    assert not UploadSession.objects.filter(pk=first.pk).exists()
    assert not (registry_settings.MODEL_UPLOAD_DIR / f"{first.pk}.tar").exists()
    assert second.received_bytes == 0
    second.status = UploadStatus.RECEIVED
    second.save()
    with pytest.raises(ApplicationError, match="already has an image"):
        services.upload_session_create(actor=msp_admin, version=version, filename="x.tar",
                                       size_bytes=5)


def test_the_same_file_resumes_in_the_service_itself(msp_admin, version):
    """The rule "same file name and size: resume" is the service's, for every client."""
    first = services.upload_session_create(actor=msp_admin, version=version,
                                           filename="car.tar", size_bytes=100)
    services.upload_chunk_append(session=first, offset=0, length=10,
                                 stream=io.BytesIO(b"x" * 10))
    again = services.upload_session_create(actor=msp_admin, version=version,
                                           filename="car.tar", size_bytes=100)
    assert again.pk == first.pk and again.received_bytes == 10


def test_the_wizard_script_talks_to_the_api(client, msp_admin, version):
    client.force_login(msp_admin)
    slug = version.model.slug
    page = client.get(f"/catalog/{slug}/v/1.0/").content.decode()
    assert f'data-create-url="/api/models/{slug}/versions/1.0/upload/"' in page
    created = client.post(f"/api/models/{slug}/versions/1.0/upload/",
                          {"filename": "car.tar", "size_bytes": 10},
                          content_type="application/json").json()
    assert created["url"] == f"/api/uploads/{created['id']}/"
    assert created["complete_url"] == f"/api/uploads/{created['id']}/complete/"
    assert created["chunk_bytes"] == CHUNK
    # The Django copy of the protocol is gone.
    assert client.post(f"/catalog/{slug}/v/1.0/upload/", {"filename": "car.tar", "size": 10},
                       content_type="application/json").status_code == 404
    assert client.get(f"/catalog/uploads/{created['id']}/").status_code == 404
