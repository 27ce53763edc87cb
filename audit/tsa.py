"""The operator's time-stamping authority, as the TSA_* settings configure it.

Its one network call is `post_timestamp_query`, to TSA_URL only. Callers make it outside
every transaction and lock (checkpoints: `audit.services.checkpoint_timestamp`; bundles:
`audit.reports.bundle.write_bundle`, which runs outside any transaction).
"""

from __future__ import annotations

from pathlib import Path

import requests
from django.conf import settings

from audit.timestamps import Stamp, TimestampError, TsaTrust, build_query, trust_from_pem, verify

# A TSA's answer is a few kilobytes (a signature and its certificates); more is not one.
MAX_RESPONSE_BYTES = 256 * 1024


def enabled() -> bool:
    """Whether new checkpoints and bundles are timestamped."""
    return bool(settings.TSA_URL)


def trust_pem() -> bytes | None:
    """The contents of TSA_CA_FILE (None when unset): what evidence bundles carry."""
    return Path(settings.TSA_CA_FILE).read_bytes() if settings.TSA_CA_FILE else None


def trust() -> TsaTrust | None:
    """What stored timestamps are verified against (None when TSA_CA_FILE is unset)."""
    pem = trust_pem()
    if pem is None:
        return None
    signer = Path(settings.TSA_CERT_FILE).read_bytes() if settings.TSA_CERT_FILE else None
    return trust_from_pem(pem, source="TSA_CA_FILE", signer_pem=signer,
                          policy=settings.TSA_POLICY_OID)


def post_timestamp_query(url: str, query: bytes, *, timeout: float) -> bytes:
    """POST an RFC 3161 query to the TSA and return its answer's bytes (RFC 3161 §3.4)."""
    try:
        with requests.post(url, data=query, timeout=timeout, stream=True,
                           allow_redirects=False,
                           headers={"Content-Type": "application/timestamp-query",
                                    "Accept": "application/timestamp-reply"}) as response:
            if response.status_code != 200:
                raise TimestampError(f"the TSA at {url} answered HTTP {response.status_code}")
            body = bytearray()
            for chunk in response.iter_content(64 * 1024):
                body += chunk
                if len(body) > MAX_RESPONSE_BYTES:
                    raise TimestampError(f"the TSA at {url} sent more than "
                                         f"{MAX_RESPONSE_BYTES // 1024} KB")
            return bytes(body)
    except requests.Timeout:
        raise TimestampError(f"the TSA at {url} did not answer within {timeout} s") from None
    except requests.RequestException as exc:
        raise TimestampError(f"the TSA at {url} cannot be reached ({_cause(exc)})") from None


def _cause(exc: BaseException) -> str:
    """The operating system's words for a failed connection ("connection refused", "name or
    service not known"), else the exception's kind."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    error = reason.__cause__ if reason is not None else exc.__cause__
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return type(exc).__name__


def stamp(message: bytes) -> tuple[bytes, Stamp]:
    """Ask the configured TSA to timestamp `message`; its answer, verified, and what it says.

    An answer that does not verify (another TSA's, wrong imprint or nonce, wrong policy) is
    refused like no answer: TimestampError."""
    query, nonce = build_query(message, hash_algorithm=settings.TSA_HASH_ALGORITHM)
    response = post_timestamp_query(settings.TSA_URL, query,
                                    timeout=settings.TSA_TIMEOUT_SECONDS)
    try:
        return response, verify(response, message, trust(), nonce=nonce)
    except TimestampError as exc:
        raise TimestampError(f"the answer of the TSA at {settings.TSA_URL} was refused: "
                             f"{exc}") from None
