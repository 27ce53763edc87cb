"""Streaming downloads that keep memory flat under both ASGI and WSGI.

Django's StreamingHttpResponse, served by an ASGI server, first collects a *synchronous*
iterator into a list (with a warning) — a whole export in memory. So under ASGI the sync
iterator is pulled in batches through `sync_to_async(thread_sensitive=True)`: every batch
runs in the request's one sync thread, where the database connection and its server-side
cursor live. Under WSGI (and the sync test client) the iterator is passed as it is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from itertools import islice

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, StreamingHttpResponse


def _batches(iterator: Iterator[str], size: int) -> list[str]:
    return list(islice(iterator, size))


async def _pull_async(iterable: Iterable[str], batch: int) -> AsyncIterator[bytes]:
    iterator = iter(iterable)
    take = sync_to_async(_batches, thread_sensitive=True)
    while chunk := await take(iterator, batch):
        yield "".join(chunk).encode()


def streaming_download(request: HttpRequest, lines: Iterable[str], *, content_type: str,
                       filename: str, batch: int = 500) -> StreamingHttpResponse:
    content = _pull_async(lines, batch) if isinstance(request, ASGIRequest) else (
        line.encode() for line in lines)
    response = StreamingHttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["X-Accel-Buffering"] = "no"
    return response
