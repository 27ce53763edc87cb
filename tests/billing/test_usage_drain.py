"""Billing's usage drain: a batch that was read but not acknowledged — its store or a listener
failed — is taken up first by the drainer's next run, at once (not a minute later, when the
group would hand it to another drainer), and stored once."""

import orjson
import pytest
import redis
from django.conf import settings

from billing.models import UsageRecord
from billing.usage import drain
from billing.usage.events import STREAM
from tests.billing.budget_helpers import event, make_model


@pytest.fixture
def stream():
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(STREAM)
    yield client
    client.delete(STREAM)


@pytest.fixture
def failing_once(monkeypatch):
    """A listener that fails on the first batch it gets, as a database error would."""
    seen = []

    def listener(events):
        seen.append([e["request_id"] for e in events])
        if len(seen) == 1:
            raise RuntimeError("the database went away")

    monkeypatch.setattr(drain, "_listeners", [*drain._listeners, listener])
    return seen


@pytest.mark.django_db
def test_a_batch_that_failed_is_taken_up_first_by_the_next_run(tenant, stream, failing_once):
    chat = make_model()
    events = [event(tenant, chat) for _ in range(3)]
    for one in events:
        stream.xadd(STREAM, {"e": orjson.dumps(one)})

    with pytest.raises(RuntimeError):
        drain.drain_usage_stream()
    assert stream.xpending(STREAM, drain.GROUP)["pending"] == 3  # read, not acknowledged

    assert drain.drain_usage_stream() == 0  # stored by the first run: not stored again
    assert failing_once == [[e["request_id"] for e in events]] * 2
    assert stream.xpending(STREAM, drain.GROUP)["pending"] == 0
    assert stream.xlen(STREAM) == 0
    assert UsageRecord.objects.count() == 3


def test_the_gateway_listens_for_the_keys_last_use():
    from gateway.services import apikeys_mark_used

    assert apikeys_mark_used in drain._listeners  # registered by GatewayConfig.ready
