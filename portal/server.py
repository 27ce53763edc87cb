"""The HTTP protocol the portal runs under uvicorn: `--http portal.server:HttpProtocol`.

uvicorn's httptools protocol, plus what it leaves out:

- a deadline for a request's head (request line and headers): uvicorn arms no timer before
  the first request of a connection, and each byte received cancels its keep-alive timer, so
  a client trickling a header byte every few seconds holds a connection (and its memory)
  forever. After HTTP_HEADER_TIMEOUT seconds the connection gets a 408 and is closed;
- the same deadline for the rest of a body the application answered without reading (a 413):
  uvicorn reads and discards it, so the client, still sending, gets the answer instead of a
  reset connection — but only for so long;
- a cap on a request head's size (HTTP_MAX_HEADER_BYTES): httptools has none; over it, 431;
- TRUSTED_PROXIES alone decides who may set forwarded headers: uvicorn's own proxy-header
  handling (on by default, trusting loopback) is switched off even when `--no-proxy-headers`
  was forgotten, because it would rewrite the client address before the portal could judge.

The request body has its own deadline where it is read (the gateway, `gateway.app`).
"""

from __future__ import annotations

import logging
from asyncio import TimerHandle

import orjson
from django.conf import settings
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

logger = logging.getLogger(__name__)


def _error_response(status: int, message: str, code: str) -> bytes:
    body = orjson.dumps({"error": {"message": message, "type": "invalid_request_error",
                                   "param": None, "code": code}})
    return b"".join([STATUS_LINE[status], b"content-type: application/json\r\n",
                     b"content-length: %d\r\n" % len(body), b"connection: close\r\n\r\n", body])


def _ignore_server_proxy_headers(config) -> None:
    if isinstance(config.loaded_app, ProxyHeadersMiddleware):
        logger.warning("uvicorn was started without --no-proxy-headers; the portal ignores "
                       "uvicorn's forwarded-header handling and trusts only TRUSTED_PROXIES.")
        config.loaded_app = config.loaded_app.app
    config.proxy_headers = False


class HttpProtocol(HttpToolsProtocol):
    def __init__(self, config, server_state, app_state, _loop=None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        if config.proxy_headers:
            _ignore_server_proxy_headers(config)
            self.app = config.loaded_app
        self.header_timeout = settings.HTTP_HEADER_TIMEOUT
        self.max_header_bytes = settings.HTTP_MAX_HEADER_BYTES
        self.deadline: TimerHandle | None = None
        self.header_bytes = 0

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm_header_deadline()  # a connection that never sends a byte is cut off too

    def connection_lost(self, exc) -> None:
        self._disarm_deadline()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.header_bytes = 0
        if self.deadline is None:
            self._arm_header_deadline()  # the next request on a kept-alive connection

    def on_url(self, url: bytes) -> None:
        self._count_header_bytes(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header_bytes(len(name) + len(value))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm_deadline()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm_deadline()  # also ends the wait for an unread body's rest
        super().on_message_complete()
        cycle = self.cycle
        if (cycle is not None and cycle.response_complete and not self.pipeline
                and not self.transport.is_closing()):
            # That rest is discarded: from here on, an idle kept-alive connection.
            self._unset_keepalive_if_required()
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        cycle = self.cycle
        if (cycle is not None and cycle.response_complete and cycle.more_body
                and not self.pipeline and not self.transport.is_closing()):
            self.deadline = self.loop.call_later(self.header_timeout,
                                                        self.transport.close)

    def send_400_response(self, msg: str) -> None:
        if not self.transport.is_closing():  # else the connection was refused already
            super().send_400_response(msg)

    def _count_header_bytes(self, size: int) -> None:
        self.header_bytes += size
        if self.header_bytes > self.max_header_bytes:
            self._refuse(431, f"The request line and headers are larger than "
                              f"{self.max_header_bytes} bytes.", "request_headers_too_large")
            # Stops the parser: uvicorn's parse-error answer sees the closed connection.
            raise ConnectionAbortedError("request head too large")

    def _arm_header_deadline(self) -> None:
        self.deadline = self.loop.call_later(self.header_timeout, self._header_timed_out)

    def _disarm_deadline(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _header_timed_out(self) -> None:
        self.deadline = None
        if not self.transport.is_closing():
            self._refuse(408, f"The request headers did not arrive within "
                              f"{self.header_timeout} s.", "request_timeout")

    def _refuse(self, status: int, message: str, code: str) -> None:
        self._disarm_deadline()
        self.transport.write(_error_response(status, message, code))
        self.transport.close()
