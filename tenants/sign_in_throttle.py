"""Failed sign-ins slow down whoever fails, never the account's owner somewhere else.

Each (account, client address) pair may fail a few times; after that it waits before its next
try, twice as long after every further failure, up to an hour. Nothing counts per account
alone: failures from one address can't lock the owner out from another. A client address
that fails across many accounts is refused as a whole by allauth's per-address limit
(`ACCOUNT_RATE_LIMITS["login_failed"]` in the settings).

The same rule guards both steps of a sign-in: the password (account = the e-mail address
typed) and the second factor (account = the user who passed the password).

The client address is `REMOTE_ADDR` as Django has it: the proxy settings decide whether a
forwarded address replaced the peer's, nothing here reads forwarded headers.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.core.cache import cache
from django.http import HttpRequest

# Failures a pair may make before it has to wait.
FREE_FAILURES = 3
FIRST_WAIT_SECONDS = 30
LONGEST_WAIT_SECONDS = 3600
# A pair's failures are forgotten after a day without one.
FORGET_AFTER_SECONDS = 24 * 3600
# IPv6 clients usually hold a whole /64: count it as one address.
IPV6_PREFIX = 64


class SignInThrottled(Exception):
    def __init__(self, wait_seconds: int):
        super().__init__(wait_seconds)
        self.wait_seconds = wait_seconds

    def message(self, what: str) -> str:
        return (f"Too many failed {what} for this account from your network address: try "
                f"again in {_duration(self.wait_seconds)}. Signing in from elsewhere is not "
                "affected.")


def wait_after(failures: int) -> int:
    """Seconds a pair waits after its `failures`-th failure in a row."""
    if failures < FREE_FAILURES:
        return 0
    return min(FIRST_WAIT_SECONDS * 2 ** (failures - FREE_FAILURES), LONGEST_WAIT_SECONDS)


def client_address(request: HttpRequest) -> str:
    raw = request.META.get("REMOTE_ADDR") or ""
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        return "unknown"
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/{IPV6_PREFIX}", strict=False))
    return str(address)


@dataclass(frozen=True)
class Attempt:
    key: str

    def succeeded(self) -> None:
        """The pair proved it knows the secret: its failures are forgiven."""
        cache.delete(self.key)


def begin(request: HttpRequest, *, step: str, account: str) -> Attempt:
    """Start an attempt of `account` from this request's client, or raise `SignInThrottled`.

    The attempt counts as a failure from the start and is forgiven when it succeeds, so
    parallel guesses can't all slip through before the first one is counted."""
    digest = hashlib.sha256(f"{step}\0{account.strip().lower()}".encode()).hexdigest()
    key = f"sign-in-throttle:{digest}:{client_address(request)}"
    with _locked(key):
        now = time.time()
        state = cache.get(key) or {"failures": 0, "at": 0.0}
        waited = now - state["at"]
        wait = wait_after(state["failures"]) - waited
        if wait > 0:
            raise SignInThrottled(math.ceil(wait))
        cache.set(key, {"failures": state["failures"] + 1, "at": now}, FORGET_AFTER_SECONDS)
    return Attempt(key)


@contextmanager
def _locked(key: str) -> Iterator[None]:
    """Serialize the read-and-count of one pair (a few milliseconds; no password hashing)."""
    lock = f"{key}:lock"
    deadline = time.monotonic() + 2
    while not cache.add(lock, 1, timeout=5):
        if time.monotonic() > deadline:
            # Someone holds the pair's lock for long: treat it as a burst and slow it down.
            raise SignInThrottled(FIRST_WAIT_SECONDS)
        time.sleep(0.02)
    try:
        yield
    finally:
        cache.delete(lock)


def _duration(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} seconds"
    return f"{math.ceil(seconds / 60)} minutes"
