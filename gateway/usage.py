"""Usage events leave the hot path through a bounded in-process buffer.

One flusher task per worker sends them to a Redis stream in pipelined batches (together with
the token counters the TPM limit reads). Once an event is in the stream it survives any gateway
worker; `gateway.tasks.drain_usage` moves it into billing's usage records, deduplicated by
request id. The buffer is flushed at shutdown; only a hard kill can lose what the last
flush interval (20 ms) had not yet sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

import orjson
import redis.asyncio as aioredis

logger = logging.getLogger(__name__)

STREAM = "gateway:usage"
STREAM_MAXLEN = 5_000_000
_FLUSH_INTERVAL = 0.02
_MAX_BUFFER = 200_000


class UsageRecorder:
    def __init__(self, client: aioredis.Redis):
        self.client = client
        self._events: deque[bytes] = deque()
        self._tokens: deque[tuple[str, str, int]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.dropped = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="usage-flusher")

    def record(self, event: dict, token_windows: tuple[str, str] | None, tokens: int) -> None:
        if len(self._events) >= _MAX_BUFFER:
            self.dropped += 1  # Redis has been down for a long time; say so in the logs
            logger.error("Usage buffer full: an event was dropped (Redis unreachable?).")
            return
        self._events.append(orjson.dumps(event))
        if token_windows and tokens:
            self._tokens.append((token_windows[0], token_windows[1], tokens))
        if len(self._events) >= 256:
            self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), _FLUSH_INTERVAL)
            except TimeoutError:
                pass
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        if not self._events and not self._tokens:
            return
        events = [self._events.popleft() for _ in range(len(self._events))]
        tokens = [self._tokens.popleft() for _ in range(len(self._tokens))]
        pipe = self.client.pipeline(transaction=False)
        for payload in events:
            pipe.xadd(STREAM, {b"e": payload}, maxlen=STREAM_MAXLEN, approximate=True)
        for key_window, tenant_window, count in tokens:
            pipe.incrby(key_window, count)
            pipe.expire(key_window, 120)
            pipe.incrby(tenant_window, count)
            pipe.expire(tenant_window, 120)
        try:
            await pipe.execute()
        except (aioredis.RedisError, OSError):
            logger.warning("Could not send %d usage events to Redis; retrying.", len(events))
            self._events.extendleft(reversed(events))
            self._tokens.extendleft(reversed(tokens))
            await asyncio.sleep(0.5)

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
        for _ in range(3):
            await self.flush()
            if not self._events:
                return
