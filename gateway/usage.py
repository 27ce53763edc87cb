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
        self._tokens: dict[str, int] = {}
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
            # Summed per counter, so a flush sends one INCRBY per key and tenant, not per event.
            for window in token_windows:
                self._tokens[window] = self._tokens.get(window, 0) + tokens
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
        tokens, self._tokens = self._tokens, {}
        pipe = self.client.pipeline(transaction=False)
        for payload in events:
            pipe.xadd(STREAM, {b"e": payload}, maxlen=STREAM_MAXLEN, approximate=True)
        for window, count in tokens.items():
            pipe.incrby(window, count)
            pipe.expire(window, 120)
        try:
            await pipe.execute()
        except (aioredis.RedisError, OSError):
            logger.warning("Could not send %d usage events to Redis; retrying.", len(events))
            self._events.extendleft(reversed(events))
            for window, count in tokens.items():
                self._tokens[window] = self._tokens.get(window, 0) + count
            await asyncio.sleep(0.5)

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
        for _ in range(3):
            await self.flush()
            if not self._events:
                return


class ScriptBatcher:
    """Sends the script calls made during one event-loop turn as one pipelined round trip.

    Under load many requests reach their rate-limit check in the same turn; batching them
    costs one write and one read instead of one each, which is most of the Redis cost.
    """

    def __init__(self, client: aioredis.Redis):
        self.client = client
        self._pending: list[tuple[tuple, asyncio.Future]] = []

    def evalsha(self, *args) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((args, future))
        if len(self._pending) == 1:
            # Two loop turns before sending: every request that became ready meanwhile joins
            # the batch (measured: fewer, larger pipelines beat sending one turn earlier).
            loop.call_soon(lambda: asyncio.ensure_future(self._send()))
        return future

    async def _send(self) -> None:
        batch, self._pending = self._pending, []
        pipe = self.client.pipeline(transaction=False)
        for args, _future in batch:
            pipe.evalsha(*args)
        try:
            results = await pipe.execute(raise_on_error=False)
        except (aioredis.RedisError, OSError) as exc:
            for _args, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_args, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

