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

from gateway.redis_pipe import PipelinedRedis, RedisReplyError

logger = logging.getLogger(__name__)

STREAM = "gateway:usage"
STREAM_MAXLEN = 5_000_000
_FLUSH_INTERVAL = 0.02
_MAX_BUFFER = 200_000


class UsageRecorder:
    def __init__(self, client: PipelinedRedis):
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
        try:
            await self.client.ensure()
            replies = [self.client.command("XADD", STREAM, "MAXLEN", "~", STREAM_MAXLEN, "*",
                                           "e", payload) for payload in events]
            for window, count in tokens.items():
                replies.append(self.client.command("INCRBY", window, count))
                replies.append(self.client.command("EXPIRE", window, 120))
            await asyncio.gather(*replies)
        except (RedisReplyError, ConnectionError, OSError):
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
