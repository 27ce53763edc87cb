"""Usage events leave the hot path through a bounded in-process buffer.

One flusher task per worker sends them to billing's usage stream (`billing.usage.events`) in
pipelined batches (together with the token counters the TPM limit reads). Once an event is in
the stream it survives any gateway worker; billing's drain (`billing.usage.drain`, every 2 s)
moves it into the usage records, deduplicated by request id. While Redis is away (a restart,
a failover) events wait in the buffer and go out when it is back: an event whose XADD was
answered is never sent again, one whose answer was lost with the connection is, and the
request id makes that copy harmless. The buffer is flushed at shutdown; only a hard kill can
lose what the last flush interval (20 ms) had not yet sent, or a Redis outage long enough to
fill the buffer (_MAX_BUFFER events).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

import orjson

from billing.usage.events import STREAM
from gateway.redis_pipe import PipelinedRedis, RedisReplyError

logger = logging.getLogger(__name__)

STREAM_MAXLEN = 5_000_000
_FLUSH_INTERVAL = 0.02
_RETRY_INTERVAL = 0.5
_MAX_BUFFER = 200_000


class UsageRecorder:
    def __init__(self, client: PipelinedRedis):
        self.client = client
        self._events: deque[bytes] = deque()
        self._tokens: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closing = False
        self.dropped = 0

    def buffered(self) -> int:
        return len(self._events)

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
        while not self._closing:
            try:
                await asyncio.wait_for(self._wake.wait(), _FLUSH_INTERVAL)
            except TimeoutError:
                pass
            self._wake.clear()
            if not await self.flush():
                await asyncio.sleep(_RETRY_INTERVAL)

    async def flush(self) -> bool:
        """Send what is buffered; put back whatever Redis did not confirm, to send again.
        True when everything went out."""
        if not self._events and not self._tokens:
            return True
        events = list(self._events)
        self._events.clear()
        tokens, self._tokens = self._tokens, {}
        try:
            await self.client.ensure()
        except (RedisReplyError, ConnectionError, OSError) as exc:
            self._put_back(events, tokens, f"Redis is unreachable ({exc})")
            return False
        sent = [self.client.command("XADD", STREAM, "MAXLEN", "~", STREAM_MAXLEN, "*",
                                    "e", payload) for payload in events]
        counted = [self.client.command("INCRBY", window, count)
                   for window, count in tokens.items()]
        expiries = [self.client.command("EXPIRE", window, 120) for window in tokens]
        replies = await asyncio.gather(*sent, *counted, *expiries, return_exceptions=True)
        event_replies = replies[:len(events)]
        token_replies = replies[len(events):len(events) + len(counted)]
        failed = [reply for reply in event_replies + token_replies
                  if isinstance(reply, Exception)]
        if not failed:
            return True
        self._put_back(
            [payload for payload, reply in zip(events, event_replies, strict=True)
             if isinstance(reply, Exception)],
            {window: count for (window, count), reply
             in zip(tokens.items(), token_replies, strict=True) if isinstance(reply, Exception)},
            str(failed[0]))
        return False

    def _put_back(self, events: list[bytes], tokens: dict[str, int], reason: str) -> None:
        logger.warning("Could not send %d usage events to Redis (%s); retrying.", len(events),
                       reason)
        self._events.extendleft(reversed(events))
        for window, count in tokens.items():
            self._tokens[window] = self._tokens.get(window, 0) + count

    async def close(self) -> None:
        """Stop the flusher after the flush it is in (cancelling it mid-flush would lose the
        batch in flight), then send what is left."""
        self._closing = True
        self._wake.set()
        if self._task:
            await self._task
        for _ in range(3):
            if await self.flush():
                return
            await asyncio.sleep(_RETRY_INTERVAL)
        logger.error("%d usage events could not be sent to Redis at shutdown and are lost.",
                     len(self._events))
