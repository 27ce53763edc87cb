"""A real RFC 3161 time-stamping authority for tests: `openssl ts -reply` behind a small HTTP
server on loopback.

The CA and the TSA's signing certificate are made here with `cryptography`; every query is
answered by Debian's openssl CLI, a TSA implementation independent of the portal's client,
at a process boundary. The HTTP server runs in a thread of the test process and accepts
`application/timestamp-query` POSTs, as RFC 3161 §3.4 describes; `stop()` shuts it down.
"""

from __future__ import annotations

import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.processes import free_port

POLICY = "1.3.6.1.4.1.55555.1.1"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Portal tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def make_ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(_name(common_name))
        .issuer_name(_name(common_name)).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256()))
    return key, certificate


def make_tsa_certificate(ca_key, ca: x509.Certificate, common_name: str
                         ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]),
                       critical=True)
        .sign(ca_key, hashes.SHA256()))
    return key, certificate


_CONFIG = """\
[ tsa ]
default_tsa = portal_test_tsa

[ portal_test_tsa ]
dir = {directory}
serial = $dir/serial
crypto_device = builtin
signer_cert = $dir/tsa.pem
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = {policy}
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = no
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


@dataclass
class LocalTsa:
    """A running TSA: its URL, its CA's certificate file and its signing certificate file."""

    directory: Path
    url: str
    ca_file: Path
    cert_file: Path
    queries: int = 0
    _server: ThreadingHTTPServer | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def answer(self, query: bytes) -> bytes | None:
        """`openssl ts -reply` for one query; None when openssl refuses it."""
        with self._lock, tempfile.TemporaryDirectory(dir=self.directory) as scratch:
            self.queries += 1
            query_file, reply_file = Path(scratch) / "query.tsq", Path(scratch) / "reply.tsr"
            query_file.write_bytes(query)
            completed = subprocess.run(
                ["openssl", "ts", "-reply", "-config", str(self.directory / "ts.cnf"),
                 "-queryfile", str(query_file), "-out", str(reply_file)],
                capture_output=True, timeout=60)
            if completed.returncode != 0 or not reply_file.is_file():
                return None
            return reply_file.read_bytes()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def start_tsa(directory: Path, *, common_name: str = "Portal Test TSA") -> LocalTsa:
    """Make a CA and a TSA certificate under `directory` and serve `openssl ts -reply`."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = make_ca(f"{common_name} Root CA")
    tsa_key, tsa_certificate = make_tsa_certificate(ca_key, ca, common_name)
    (directory / "ca.pem").write_bytes(_pem(ca))
    (directory / "tsa.pem").write_bytes(_pem(tsa_certificate))
    (directory / "tsa.key").write_bytes(tsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (directory / "serial").write_text("01\n")
    (directory / "ts.cnf").write_text(_CONFIG.format(directory=directory, policy=POLICY))
    port = free_port()
    tsa = LocalTsa(directory=directory, url=f"http://127.0.0.1:{port}/tsa",
                  ca_file=directory / "ca.pem", cert_file=directory / "tsa.pem")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            if self.headers.get("Content-Type") != "application/timestamp-query":
                self.send_error(415, "send application/timestamp-query")
                return
            reply = tsa.answer(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            if reply is None:
                self.send_error(400, "openssl ts refused the query")
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format, *args):  # keep test output clean
            pass

    tsa._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=tsa._server.serve_forever, name="test-tsa", daemon=True).start()
    return tsa


def dead_url() -> str:
    """A URL on loopback where nothing listens: a TSA that is down."""
    return f"http://127.0.0.1:{free_port()}/tsa"
