"""One multiplexed, automatically pipelined Redis connection per gateway worker.

Every command issued during one event-loop turn goes out in a single write; replies come
back in order and are matched to their callers first-in, first-out, parsed by hiredis. This
costs a few microseconds per command, where a pooled redis-py client spends tens (connection
checkout, retry wrapper, pure-Python packing). Used only on the hot path (rate limits, usage
events, the configuration version); everything else keeps redis-py.
"""

from __future__ import annotations

import asyncio
from collections import deque
from urllib.parse import unquote, urlparse

import hiredis


class RedisReplyError(Exception):
    """Redis answered a command with an error (e.g. NOSCRIPT)."""


def _pack(args: tuple) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if not isinstance(arg, bytes):
            arg = str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(parts)


class PipelinedRedis:
    def __init__(self, url: str):
        parsed = urlparse(url)
        if parsed.scheme not in ("redis", "rediss", "unix"):
            raise ValueError("The gateway's Redis URL must be redis://, rediss:// or unix://.")
        self.socket_path = parsed.path if parsed.scheme == "unix" else None
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or 6379
        self.password = unquote(parsed.password) if parsed.password else None
        self.username = unquote(parsed.username) if parsed.username else None
        query_db = dict(p.split("=", 1) for p in parsed.query.split("&") if "=" in p).get("db")
        self.db = int(query_db or 0) if self.socket_path else int(parsed.path.lstrip("/") or 0)
        self.tls = parsed.scheme == "rediss"
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task | None = None
        self._pending: deque[asyncio.Future] = deque()
        self._buffer: list[bytes] = []
        self._flush_scheduled = False
        self._connecting: asyncio.Future | None = None

    async def _connect(self) -> None:
        if self.socket_path:
            reader, writer = await asyncio.open_unix_connection(self.socket_path)
        else:
            reader, writer = await asyncio.open_connection(self.host, self.port,
                                                           ssl=True if self.tls else None)
        self._writer = writer
        self._reader_task = asyncio.create_task(self._read(reader), name="redis-pipe-reader")
        setup = []
        if self.password:
            setup.append(self.command(*(["AUTH", self.username, self.password] if self.username
                                        else ["AUTH", self.password])))
        if self.db:
            setup.append(self.command("SELECT", self.db))
        for reply in setup:
            await reply

    async def ensure(self) -> None:
        if self.connected:
            return
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())
        try:
            await asyncio.shield(self._connecting)
        finally:
            self._connecting = None

    @property
    def connected(self) -> bool:
        """Whether `command` may be used now: a command queued while (re)connecting would be
        flushed ahead of the connection's AUTH/SELECT and get their replies."""
        return self._writer is not None and not self._writer.is_closing()

    def command(self, *args) -> asyncio.Future:
        """Queue a command on the live connection; the reply arrives on the future."""
        future = asyncio.get_running_loop().create_future()
        self._pending.append(future)
        self._buffer.append(_pack(args))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        return future

    async def execute(self, *args):
        await self.ensure()
        return await self.command(*args)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._buffer and self._writer is not None:
            self._writer.write(b"".join(self._buffer))
            self._buffer.clear()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        parser = hiredis.Reader(replyError=RedisReplyError)
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    raise ConnectionError("Redis closed the connection.")
                parser.feed(data)
                while (reply := parser.gets()) is not False:
                    future = self._pending.popleft()
                    if future.done():
                        continue
                    if isinstance(reply, RedisReplyError):
                        future.set_exception(reply)
                    else:
                        future.set_result(reply)
        except (ConnectionError, OSError) as exc:
            self._fail(exc)
        except asyncio.CancelledError:
            self._fail(ConnectionError("Redis connection closed."))
            raise

    def _fail(self, exc: BaseException) -> None:
        """The connection is gone: every waiting caller gets the error; the next one
        reconnects."""
        if self._writer is not None:
            self._writer.close()
        self._writer = None
        self._buffer.clear()
        while self._pending:
            future = self._pending.popleft()
            if not future.done():
                future.set_exception(ConnectionError(str(exc)))

    async def close(self) -> None:
        if self._reader_task:
            self._reader_task.cancel()
        if self._writer is not None:
            self._writer.close()
