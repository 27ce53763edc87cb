"""Network doubles at the process boundary: a resolver that answers what a test says, a server
that accepts connections and never answers, and one that records what it receives."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class FakeDns:
    """`socket.getaddrinfo` for the names a test gives: each lookup of a name takes the next
    list of addresses (the last one repeats); other names resolve as usual."""

    answers: dict[str, list[list[str]]]
    lookups: list[str] = field(default_factory=list)

    def install(self, monkeypatch) -> FakeDns:
        real = socket.getaddrinfo

        def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
            if host not in self.answers:
                return real(host, port, family, type, proto, flags)
            self.lookups.append(host)
            queue = self.answers[host]
            addresses = queue.pop(0) if len(queue) > 1 else queue[0]
            port = int(port or 0)
            return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6,
                     "", (a, port, 0, 0) if ":" in a else (a, port)) for a in addresses]

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        return self


@dataclass
class StallingServer:
    """Accepts TCP connections on loopback and never answers (a hung upstream)."""

    url: str
    accepted: threading.Event


@contextmanager
def stalling_server() -> Iterator[StallingServer]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    accepted, held, stop = threading.Event(), [], threading.Event()

    def serve():
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                continue
            held.append(connection)
            accepted.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield StallingServer(f"http://127.0.0.1:{listener.getsockname()[1]}", accepted)
    finally:
        stop.set()
        thread.join(timeout=5)
        for connection in held:
            connection.close()
        listener.close()


@dataclass
class RecordingServer:
    """An HTTP server on loopback that answers 200 `{}` and keeps (method, path, headers)."""

    url: str
    port: int
    requests: list[tuple[str, str, dict]]


@contextmanager
def recording_server(host: str = "127.0.0.1", *, redirect_to: str = ""
                     ) -> Iterator[RecordingServer]:
    """With `redirect_to`, every answer is a 302 there instead."""
    seen: list[tuple[str, str, dict]] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self):
            seen.append((self.command, self.path, dict(self.headers)))
            body = json.dumps({}).encode()
            self.send_response(302 if redirect_to else 200)
            if redirect_to:
                self.send_header("Location", redirect_to)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer((host, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        yield RecordingServer(f"http://{host}:{port}", port, seen)
    finally:
        server.shutdown()
        server.server_close()
