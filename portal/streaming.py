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
from pathlib import Path

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import FileResponse, HttpRequest, StreamingHttpResponse


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


async def _file_chunks(path: Path, size: int) -> AsyncIterator[bytes]:
    handle = await sync_to_async(path.open, thread_sensitive=False)("rb")
    read = sync_to_async(handle.read, thread_sensitive=False)
    try:
        while chunk := await read(size):
            yield chunk
    finally:
        handle.close()


def file_download(request: HttpRequest, path: Path, *, content_type: str,
                  filename: str, chunk: int = 256 * 1024) -> StreamingHttpResponse:
    """A file as an attachment, read chunk by chunk: under ASGI through an async iterator
    (Django's FileResponse would first read the whole file into a list), under WSGI as a
    FileResponse."""
    if not isinstance(request, ASGIRequest):
        return FileResponse(path.open("rb"), as_attachment=True, filename=filename,
                            content_type=content_type)
    response = StreamingHttpResponse(_file_chunks(path, chunk), content_type=content_type)
    response["Content-Length"] = str(path.stat().st_size)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
