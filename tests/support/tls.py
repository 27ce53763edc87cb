"""A throw-away certificate authority for TLS tests: a server certificate for `localhost` and
a client certificate, both signed by the CA."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Pki:
    ca_pem: str
    server_cert_pem: str
    server_key_pem: str
    client_cert_pem: str
    client_key_pem: str


def _key_pem(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _issue(subject: str, key, issuer_name, issuer_key, *, ca=False, names=()) -> str:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(issuer_name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)),
                                        critical=False)
    return builder.sign(issuer_key, hashes.SHA256()).public_bytes(
        serialization.Encoding.PEM).decode()


def make_pki() -> Pki:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "portal test CA")])
    ca_pem = _issue("portal test CA", ca_key, ca_name, ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_pem = _issue("localhost", server_key, ca_name, ca_key, names=[
        x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    client_key = ec.generate_private_key(ec.SECP256R1())
    client_pem = _issue("portal", client_key, ca_name, ca_key)
    return Pki(ca_pem, server_pem, _key_pem(server_key), client_pem, _key_pem(client_key))


@dataclass
class TlsServer:
    port: int
    requests: list[tuple[str, dict, str]]  # (path, headers, client certificate subject)


@contextmanager
def tls_server(pki: Pki, directory: Path, *, require_client_cert: bool = False,
               answers: dict[str, dict] | None = None) -> Iterator[TlsServer]:
    """HTTPS on 127.0.0.1 with the PKI's `localhost` certificate; answers GETs from `answers`
    (path → JSON), 200 `{}` otherwise, and keeps what it received."""
    (directory / "server.pem").write_text(pki.server_cert_pem + pki.server_key_pem)
    (directory / "ca.pem").write_text(pki.ca_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "server.pem")
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(directory / "ca.pem")
    seen: list[tuple[str, dict, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            peer = self.connection.getpeercert() or {}
            subject = dict(item[0] for item in peer.get("subject", ())).get("commonName", "")
            seen.append((self.path, dict(self.headers), subject))
            body = json.dumps((answers or {}).get(self.path, {})).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield TlsServer(server.server_address[1], seen)
    finally:
        server.shutdown()
        server.server_close()
