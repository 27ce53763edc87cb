"""A deprecated model answers with RFC 9745 `Deprecation` and RFC 8594 `Sunset` headers; after
its sunset, the gateway refuses it with an OpenAI-style error that names the successor."""

import time
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import openai
import pytest
import requests

from models_catalog import services as catalog_services
from tests.support.gateway_fixtures import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"model": "chat-small", "messages": [{"role": "user", "content": "hi"}]}


def call(served):
    return requests.post(served.base + "/chat/completions", json=CHAT, timeout=10,
                         headers={"Authorization": f"Bearer {served.token}"})


def test_deprecation_and_sunset_headers_then_the_successor_named(served):
    successor = catalog_services.model_create(actor=served.actor, slug="chat-large",
                                              name="Chat Large", task="chat")
    sunset = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    model = catalog_services.model_set_lifecycle(actor=served.actor, model=served.chat,
                                                 lifecycle="deprecated", sunset_at=sunset,
                                                 successor=successor)
    response = wait_for(lambda: "sunset" in (r := call(served)).headers and r)
    assert response.status_code == 200
    assert response.headers["deprecation"] == f"@{int(model.deprecated_at.timestamp())}"
    assert parsedate_to_datetime(response.headers["sunset"]) == sunset
    assert response.headers["sunset"].endswith(" GMT")
    assert response.headers["link"] == '</v1/models/chat-large>; rel="successor-version"'
    assert "chat-large" in response.headers["warning"]

    catalog_services.model_set_lifecycle(actor=served.actor, model=served.chat,
                                         lifecycle="deprecated",
                                         sunset_at=datetime.now(UTC) - timedelta(minutes=1),
                                         successor=successor)
    time.sleep(0.6)
    refused = wait_for(lambda: (r := call(served)).status_code == 410 and r)
    assert refused.status_code == 410
    error = refused.json()["error"]
    assert error["code"] == "model_sunset" and error["param"] == "model"
    assert error["type"] == "invalid_request_error"
    assert "`chat-small` reached its sunset" in error["message"]
    assert "use `chat-large` instead" in error["message"]
    assert refused.headers["deprecation"].startswith("@") and "sunset" in refused.headers
    client = openai.OpenAI(base_url=served.base, api_key=served.token, max_retries=0)
    with pytest.raises(openai.APIStatusError, match="chat-large"):
        client.chat.completions.create(**CHAT)


def test_a_model_past_its_sunset_is_no_longer_listed(served):
    def listed():
        return {m.id for m in openai.OpenAI(base_url=served.base, api_key=served.token,
                                            max_retries=0).models.list()}

    assert "chat-small" in listed()
    catalog_services.model_set_lifecycle(
        actor=served.actor, model=served.chat, lifecycle="deprecated",
        sunset_at=datetime.now(UTC) + timedelta(days=1))
    time.sleep(0.6)
    assert wait_for(lambda: "chat-small" in listed())  # deprecated, still listed until then
    catalog_services.model_set_lifecycle(
        actor=served.actor, model=served.chat, lifecycle="deprecated",
        sunset_at=datetime.now(UTC) - timedelta(minutes=1))
    assert wait_for(lambda: "chat-small" not in listed())


def test_an_active_model_carries_no_deprecation_headers(served):
    response = call(served)
    assert response.status_code == 200
    assert not {"deprecation", "sunset", "warning"} & set(response.headers)
