"""Requests- and tokens-per-minute limits per key and per tenant, in Redis; failed
authentications per client address, in each worker.

One EVALSHA per request checks all four counters of the current minute and, if none is
exhausted, counts the request — atomically, so every gateway worker sees the same numbers.
Tokens are added after the response (they are only known then), in the usage flusher's
pipeline; a request is refused once the minute's tokens reached the limit.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

LUA = """
local limits = {tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])}
local used = {}
for i = 1, 4 do used[i] = tonumber(redis.call('GET', KEYS[i]) or '0') end
for i = 1, 4 do
  if limits[i] > 0 and used[i] >= limits[i] then
    return {i, used[1], used[2], used[3], used[4]}
  end
end
used[1] = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[5])
used[3] = redis.call('INCR', KEYS[3])
redis.call('EXPIRE', KEYS[3], ARGV[5])
return {0, used[1], used[2], used[3], used[4]}
"""

WINDOW_SECONDS = 60
_WHICH = {1: ("requests", "key"), 2: ("tokens", "key"), 3: ("requests", "tenant"),
          4: ("tokens", "tenant")}


def window_keys(key_id: int, tenant_id: int, now: float) -> tuple[str, str, str, str]:
    minute = int(now // WINDOW_SECONDS)
    return (f"rl:{minute}:k{key_id}:r", f"rl:{minute}:k{key_id}:t",
            f"rl:{minute}:t{tenant_id}:r", f"rl:{minute}:t{tenant_id}:t")


@dataclass(frozen=True)
class Decision:
    refused: str | None  # "requests" / "tokens", or None when allowed
    scope: str | None  # "key" / "tenant"
    headers: list[tuple[bytes, bytes]]
    retry_after: int


def decide(result: list[int], limits: tuple[int, int, int, int], now: float) -> Decision:
    """Turn the script's answer into OpenAI-style x-ratelimit-* headers and a verdict."""
    which, used = result[0], result[1:]
    reset = max(1, WINDOW_SECONDS - int(now % WINDOW_SECONDS))
    headers: list[tuple[bytes, bytes]] = []
    for kind, indexes in (("requests", (0, 2)), ("tokens", (1, 3))):
        # Report the tighter of the key's and the tenant's limit.
        candidates = [(limits[i], used[i]) for i in indexes if limits[i] > 0]
        if candidates:
            limit, count = min(candidates, key=lambda c: c[0] - c[1])
            headers += [(f"x-ratelimit-limit-{kind}".encode(), str(limit).encode()),
                        (f"x-ratelimit-remaining-{kind}".encode(),
                         str(max(0, limit - count)).encode()),
                        (f"x-ratelimit-reset-{kind}".encode(), f"{reset}s".encode())]
    if which == 0:
        return Decision(None, None, headers, 0)
    refused, scope = _WHICH[which]
    return Decision(refused, scope, headers + [(b"retry-after", str(reset).encode())], reset)


class FailedAuthLimiter:
    """Failed authentications per client address and minute, counted in this worker's memory:
    failures only, so the hot path pays nothing, and no Redis round trip. Past the limit a
    client's requests that would need a database lookup (or fail anyway) are refused before
    it, so garbage keys can't hammer the database. IPv6 clients count per /64, the block one
    host usually holds. With N workers a client gets at most N × the limit a minute."""

    def __init__(self, limit: int, max_clients: int = 100_000):
        self.limit = limit
        self.max_clients = max_clients
        self._minute = 0
        self._failures: dict[str, int] = {}

    @staticmethod
    def client_key(address) -> str:
        if address is None:
            return "unknown"
        if address.version == 6:
            return str(ipaddress.ip_network(f"{address}/64", strict=False))
        return str(address)

    def _window(self, now: float) -> dict[str, int]:
        minute = int(now // WINDOW_SECONDS)
        if minute != self._minute:
            self._minute, self._failures = minute, {}
        return self._failures

    def retry_after(self, client: str, now: float) -> int:
        """0 when the client may go on, else the seconds until its window ends. When the
        table is full (a flood from very many addresses), newcomers wait too."""
        failures = self._window(now)
        count = failures.get(client)
        if (count is not None and count >= self.limit) or (
                count is None and len(failures) >= self.max_clients):
            return max(1, WINDOW_SECONDS - int(now % WINDOW_SECONDS))
        return 0

    def add(self, client: str, now: float) -> None:
        failures = self._window(now)
        if client in failures or len(failures) < self.max_clients:
            failures[client] = failures.get(client, 0) + 1
