"""A registry (or a proxy in front of it) that answers well-formed JSON which is not an object
— an array, a string, null — gets a clear registry error from the client, never an
AttributeError: the tag list, the token service, manifests and referrers indexes."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from models_catalog import registry as oci

DIGEST = "sha256:" + "a" * 64


class _OddRegistry(BaseHTTPRequestHandler):
    """Answers every GET with a JSON array; asks for a bearer token first when the request
    carries none (the token service's answer is an array too)."""

    def do_GET(self):  # noqa: N802 — http.server's naming
        if self.path.startswith("/token"):
            return self._send(200, b"[]", "application/json")
        if self.server.challenge and "Authorization" not in self.headers:
            self.send_response(401)
            self.send_header("WWW-Authenticate", f'Bearer realm="http://127.0.0.1:'
                             f'{self.server.server_port}/token",service="odd"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if "/manifests/" in self.path:
            return self._send(200, b"[1, 2]", oci.OCI_MANIFEST)
        if "/referrers/" in self.path:
            return self._send(200, b'"nothing"', oci.OCI_INDEX)
        return self._send(200, b"[]", "application/json")

    def _send(self, status, body, content_type):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Docker-Content-Digest", DIGEST)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def odd_registry():
    servers = []

    def start(*, challenge: bool = False) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _OddRegistry)
        server.challenge = challenge
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_a_tag_list_that_is_not_an_object(odd_registry):
    client = oci.RegistryClient(odd_registry(), timeout=5)
    with pytest.raises(oci.RegistryUnavailable, match="tag list is not a JSON object"):
        client.tags_list("landing/odd")


def test_a_manifest_that_is_not_an_object(odd_registry):
    client = oci.RegistryClient(odd_registry(), timeout=5)
    manifest = oci.Manifest(raw=b"[1, 2]", digest=DIGEST, media_type=oci.OCI_MANIFEST)
    with pytest.raises(oci.UnsupportedMediaType, match="not a JSON object"):
        manifest.image_blobs()
    with pytest.raises(oci.RegistryError):
        client.referrers("landing/odd", DIGEST)
    with pytest.raises(oci.UnsupportedMediaType, match="descriptor"):
        oci.Descriptor.from_json(["not", "a", "descriptor"])


def test_a_token_service_that_answers_an_array(odd_registry):
    client = oci.RegistryClient(odd_registry(challenge=True), username="u", password="p",
                                timeout=5)
    with pytest.raises(oci.RegistryUnavailable, match="token service's answer"):
        client.tags_list("landing/odd")
