"""RFC 3161 trusted timestamps: queries and their verification, without Django.

A time-stamping authority (TSA) signs "data with this hash existed at time T". The platform
asks for a timestamp over exactly the bytes its own Ed25519 signature covers — a checkpoint's
signed payload (`audit.chain.checkpoint_payload`), an evidence bundle's `manifest.json` — so
the timestamp vouches for the same statement as the signature. Someone who holds the platform
key can sign a rewritten history, but cannot get a timestamp for it dated before the
rewrite: the TSA's key is not theirs.

What is kept is the TSA's answer as it arrived (a DER `TimeStampResp`, the `.tsr` file of
`openssl ts`), so that `openssl ts -verify -data FILE -in X.tsr -CAfile tsa-ca.pem` checks it
too. Verification (via `rfc3161-client`) requires the TSA's signature to chain to the
certificates the verifier trusts, valid at the stamped time, with the critical
`timeStamping` key usage, and the imprint to equal the hash of the data; optionally a pinned
signing certificate and policy. Like `audit.bundle_verify`, this module runs offline.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from rfc3161_client import (
    HashAlgorithm,
    TimestampRequestBuilder,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)
from rfc3161_client.tsp import PKIStatus

from audit.chain import canonical_time, checkpoint_payload
from audit.integrity import SignedCheckpoint

# The digests a query may use (what rfc3161-client builds); a token's own algorithm is
# checked on verification, where SHA-384 is accepted too.
HASH_ALGORITHMS = {"sha256": HashAlgorithm.SHA256, "sha512": HashAlgorithm.SHA512}
_DIGEST_NAMES = {"2.16.840.1.101.3.4.2.1": "sha256", "2.16.840.1.101.3.4.2.2": "sha384",
                 "2.16.840.1.101.3.4.2.3": "sha512"}
_OPENSSL_REASON = re.compile(r'data: "(?:Verify error: )?([^"]+)"')


class TimestampError(Exception):
    """A timestamp could not be obtained, or does not verify; the message says why."""


def load_certificates(pem: bytes, *, source: str) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise TimestampError(f"{source} holds no PEM certificate") from None
    return certificates


def describe_certificate(certificate: x509.Certificate) -> str:
    fingerprint = certificate.fingerprint(hashes.SHA256()).hex()
    return f"{certificate.subject.rfc4514_string()} (SHA-256 fingerprint {fingerprint})"


@dataclass(frozen=True)
class TsaTrust:
    """What a verifier trusts: root (and intermediate) certificates the TSA's certificate
    must chain to; optionally the one signing certificate and the policy it must use."""

    roots: tuple[x509.Certificate, ...]
    signer: x509.Certificate | None = None
    policy: str | None = None
    source: str = "the trusted TSA certificates"

    def describe(self) -> str:
        return f"{self.source}: " + "; ".join(describe_certificate(c) for c in self.roots)


def trust_from_pem(pem: bytes, *, source: str, signer_pem: bytes | None = None,
                   policy: str | None = None) -> TsaTrust:
    signer = None
    if signer_pem:
        signer = load_certificates(signer_pem, source="the pinned TSA certificate")[0]
    return TsaTrust(tuple(load_certificates(pem, source=source)), signer, policy or None, source)


@dataclass(frozen=True)
class Stamp:
    """What a verified timestamp says."""

    time: datetime  # the TSA's genTime, UTC
    tsa: str  # subject of the certificate that signed it
    serial: int
    policy: str
    hash_algorithm: str

    def describe(self) -> str:
        when = (canonical_time(self.time) if self.time.microsecond
                else self.time.strftime("%Y-%m-%dT%H:%M:%SZ"))
        return (f"{when} by {self.tsa} (serial {self.serial}, policy {self.policy}, "
                f"{self.hash_algorithm})")


def build_query(message: bytes, *, hash_algorithm: str) -> tuple[bytes, int]:
    """A DER TimeStampReq over `message` asking for the TSA's certificate in the answer (so
    the token verifies on its own), and the random nonce the answer must repeat."""
    request = (TimestampRequestBuilder().data(message)
               .hash_algorithm(HASH_ALGORITHMS[hash_algorithm])
               .nonce(nonce=True).cert_request(cert_request=True).build())
    return request.as_bytes(), request.nonce


def _reason(exc: VerificationError, trust: TsaTrust) -> str:
    text = str(exc)
    if text.startswith("Error while verifying certificates"):
        found = _OPENSSL_REASON.findall(text)
        detail = f" ({found[-1]})" if found else ""
        return (f"the TSA's signature does not verify against {trust.source}{detail}: "
                "another TSA signed it, or the token was changed")
    if text == "Mismatch between messages":
        return "its imprint is not the hash of the timestamped data: the data was changed"
    if text == "Nonce mismatch":
        return "the answer does not repeat the query's nonce (a replayed or mixed-up answer)"
    if text == "Policy ID mismatch":
        return f"it was issued under another policy than the required {trust.policy}"
    if text.startswith("Embedded certificate does not match"):
        return "another certificate than the pinned TSA certificate signed it"
    return text[:300]


def _signer_subject(response) -> str:
    signer_info = next(iter(response.signed_data.signer_infos))
    for der in response.signed_data.certificates:
        certificate = x509.load_der_x509_certificate(der)
        if (certificate.issuer == signer_info.issuer
                and certificate.serial_number == signer_info.serial_number):
            return certificate.subject.rfc4514_string()
    return signer_info.issuer.rfc4514_string()


def verify(response_der: bytes, message: bytes, trust: TsaTrust, *,
           nonce: int | None = None) -> Stamp:
    """Check a TSA answer over `message`; the Stamp, or TimestampError saying what is wrong."""
    try:
        response = decode_timestamp_response(response_der)
    except ValueError as exc:
        raise TimestampError(f"not an RFC 3161 timestamp response ({exc})") from None
    if response.status != PKIStatus.GRANTED:
        said = "; ".join(response.status_string) or "no reason given"
        raise TimestampError(f"the TSA refused the request (status {response.status}: {said})")
    verifier = VerifierBuilder(
        roots=list(trust.roots), tsa_certificate=trust.signer, nonce=nonce,
        policy_id=x509.ObjectIdentifier(trust.policy) if trust.policy else None).build()
    try:
        verifier.verify_message(response, message)
    except VerificationError as exc:
        raise TimestampError(_reason(exc, trust)) from None
    except ValueError as exc:  # a structure the parser accepted but verification can't use
        raise TimestampError(f"the token cannot be checked ({exc})") from None
    info = response.tst_info
    algorithm = info.message_imprint.hash_algorithm.dotted_string
    return Stamp(time=info.gen_time.astimezone(UTC), tsa=_signer_subject(response),
                 serial=info.serial_number, policy=info.policy.dotted_string,
                 hash_algorithm=_DIGEST_NAMES.get(algorithm, algorithm))


def checkpoint_message(checkpoint: SignedCheckpoint) -> bytes:
    """The bytes a checkpoint's timestamp covers: its signed payload."""
    return checkpoint_payload(last_seq=checkpoint.last_seq, head_hash=checkpoint.head_hash,
                              created_at=checkpoint.created_at)


def _signed_at(checkpoint: SignedCheckpoint) -> datetime:
    return datetime.strptime(checkpoint.created_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


@dataclass
class StampReport:
    """The outcome of checking the timestamps of a run of checkpoints."""

    verified: int = 0
    unstamped: list[int] = field(default_factory=list)
    latest: tuple[int, Stamp] | None = None
    largest_delay: tuple[int, timedelta] | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def summary(self) -> str:
        if not self.verified:
            return "no checkpoint carries a timestamp"
        seq, stamp = self.latest
        text = (f"{self.verified} checkpoint timestamps verified; the latest, of #{seq}, "
                f"dated {stamp.describe()}")
        if self.largest_delay is not None:
            delay_seq, delay = self.largest_delay
            text += f"; the longest wait for a timestamp was {_duration(delay)} (#{delay_seq})"
        return text


def _duration(delay: timedelta) -> str:
    seconds = int(delay.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def verify_checkpoint_stamps(checkpoints: Iterable[SignedCheckpoint],
                             trust: TsaTrust) -> StampReport:
    """Verify every checkpoint's timestamp (`timestamp`: base64 of the TSA's answer) against
    its signed payload; stops at the first that fails."""
    report = StampReport()
    for checkpoint in checkpoints:
        if not checkpoint.timestamp:
            report.unstamped.append(checkpoint.last_seq)
            continue
        try:
            stamp = verify(base64.b64decode(checkpoint.timestamp, validate=True),
                           checkpoint_message(checkpoint), trust)
        except (TimestampError, ValueError) as exc:
            report.error = (f"the timestamp of the checkpoint at #{checkpoint.last_seq} does "
                            f"not verify: {exc}")
            return report
        report.verified += 1
        if report.latest is None or checkpoint.last_seq > report.latest[0]:
            report.latest = (checkpoint.last_seq, stamp)
        delay = stamp.time - _signed_at(checkpoint)
        if report.largest_delay is None or delay > report.largest_delay[1]:
            report.largest_delay = (checkpoint.last_seq, delay)
    return report
