"""Moves usage events from the gateway's Redis stream into billing's usage records.

A consumer group gives at-least-once delivery: an event is acknowledged only after its batch
is committed, and events a crashed drainer had claimed are re-claimed after a minute.
Records are unique by request id, so a redelivered event is never counted twice.

Other apps that keep figures of their own from the same events register a listener
(`after_store`) instead of being imported here: the gateway records when each key was last
used (GatewayConfig.ready), and billing never imports the gateway.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

import orjson
import redis
from django.conf import settings

from billing.usage.events import STREAM
from billing.usage.services import usage_records_ingest

GROUP = "billing"
STALE_AFTER_MS = 60_000

StoredListener = Callable[[list[dict]], None]
_listeners: list[StoredListener] = []


def after_store(listener: StoredListener) -> StoredListener:
    """Call `listener(events)` with every batch of events once its records are committed and
    before the batch is acknowledged: a listener that fails leaves the batch in the stream, to
    be stored again (a no-op) and passed to it again."""
    if listener not in _listeners:
        _listeners.append(listener)
    return listener


def _client() -> redis.Redis:
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
    return client


def _store(client: redis.Redis, entries: list) -> int:
    if not entries:
        return 0
    ids, events = [], []
    for entry_id, fields in entries:
        ids.append(entry_id)
        if fields and b"e" in fields:  # entries deleted meanwhile come back empty
            events.append(orjson.loads(fields[b"e"]))
    created = usage_records_ingest(events=events)
    for listener in _listeners:
        listener(events)
    client.xack(STREAM, GROUP, *ids)
    client.xdel(STREAM, *ids)
    return created


def _read(client: redis.Redis, consumer: str, start: str, count: int) -> list:
    response = client.xreadgroup(GROUP, consumer, {STREAM: start}, count=count)
    return response[0][1] if response else []


def drain_usage_stream(*, batch_size: int = 2000, max_batches: int = 100) -> int:
    """Drain what is in the stream now (bounded per call); returns records created.

    First what this drainer read before and could not store (its batch failed: the database
    restarted, say), so the next run retries it at once instead of after STALE_AFTER_MS; then
    what a crashed drainer left; then new events."""
    client = _client()
    consumer = f"{socket.gethostname()}-{os.getpid()}"
    created = 0
    for _ in range(max_batches):
        own = _read(client, consumer, "0", batch_size)
        if not own:
            break
        created += _store(client, own)
    _next, stale, _deleted = client.xautoclaim(STREAM, GROUP, consumer, STALE_AFTER_MS,
                                               "0-0", count=batch_size)
    created += _store(client, stale)
    for _ in range(max_batches):
        entries = _read(client, consumer, ">", batch_size)
        if not entries:
            break
        created += _store(client, entries)
    return created
