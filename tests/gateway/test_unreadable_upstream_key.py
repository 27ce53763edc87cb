"""An upstream API key that no key in FIELD_ENCRYPTION_KEYS decrypts (written under a key that
was then removed) disables that upstream only: a freshly started gateway comes up, every other
model keeps serving, the affected model answers an OpenAI-style 503 that names the problem
without leaking anything, and the audit trail records it once per deployment."""

import time

import pytest
import requests
from django.db import connection

from audit.models import AuditEvent
from deployments import services as deployment_services
from models_catalog import services as catalog_services
from tests.gateway.test_faults import CHAT, assert_openai_error
from tests.support.gateway_fixtures import start_gateway
from tests.support.processes import stop
from tests.support.secret_keys import keys, new_key

pytestmark = pytest.mark.django_db(transaction=True)

UPSTREAM_KEY = "upstream-secret-value"


def test_a_fresh_gateway_skips_only_the_upstreams_whose_key_it_cannot_read(served):
    locked_model = catalog_services.model_create(actor=served.actor, slug="chat-locked",
                                                 name="Chat Locked", task="chat")
    with keys(new_key()):  # written under a key that is then removed from the settings
        locked = [deployment_services.external_endpoint_register(
            actor=served.actor, model=model, base_url=served.upstream,
            upstream_model="chat-small", upstream_api_key=UPSTREAM_KEY, name=name)
            for model, name in ((locked_model, "locked-only"), (served.chat, "locked-second"))]
    assert all(d.status == "ready" for d in locked)

    gateway = start_gateway(dict(connection.settings_dict))
    try:
        base = gateway.url + "/v1"
        auth = {"Authorization": f"Bearer {served.token}"}
        listed = requests.get(base + "/models", headers=auth, timeout=10).json()["data"]
        assert {m["id"] for m in listed} == {"chat-small", "embed-small", "completion-small",
                                             "chat-locked"}
        for _ in range(6):  # chat-small's readable upstream takes every request
            answer = requests.post(base + "/chat/completions", json=CHAT, headers=auth,
                                   timeout=30)
            assert answer.status_code == 200, answer.text
        embedded = requests.post(base + "/embeddings", headers=auth, timeout=30,
                                 json={"model": "embed-small", "input": "hello"})
        assert embedded.status_code == 200, embedded.text

        refused = requests.post(base + "/chat/completions", headers=auth, timeout=30,
                                json={**CHAT, "model": "chat-locked"})
        error = assert_openai_error(refused, 503, code="upstream_disabled",
                                    contains="can't read the credentials")
        for leak in (UPSTREAM_KEY, served.upstream, locked[0].upstream_api_key_encrypted):
            assert leak not in refused.text
        assert error["type"] == "server_error"
    finally:
        stop(gateway.process)

    time.sleep(1)  # the session's gateway workers reload too: still one event per deployment
    for deployment in locked:
        assert AuditEvent.objects.filter(action="secret.unreadable",
                                         target_id=str(deployment.pk)).count() == 1
