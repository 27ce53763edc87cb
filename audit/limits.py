"""What may be written into the audit trail, bounded where every event passes: `record_event`.

The trail refuses deletes until retention ends, so anything a caller hands over stays for
years. Two bounds keep untrusted input (an issuer claim, an e-mail address tried, an error
text, a label) from growing it:

* size — every string is cut to `TEXT_LIMIT` characters (a column to its width), nesting to
  `DEPTH_LIMIT` levels and the serialized details to `DETAILS_LIMIT_BYTES`; a cut is visible
  and says how much there was. Characters PostgreSQL can't store (NUL, lone surrogates) and
  non-finite numbers become text, so odd input is recorded instead of failing the request.
* rate — events of the anonymous actor (failed sign-ins, rejected tokens: anyone on the
  network can cause them) are admitted up to a budget per client and per minute, and up to
  a budget for all clients together. The first event over a budget is replaced by one
  `audit.anonymous_throttled` event saying so; the rest of that minute is only logged.

The bounds apply to what is stored, before the hash is computed, so a stored event still
hashes to its link and `audit_verify` is unaffected.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import re
import time
from typing import Any

from django.conf import settings
from django.core.cache import cache
from redis.exceptions import RedisError

from audit.chain import canonical_json

logger = logging.getLogger(__name__)

ANONYMOUS = "anonymous"
THROTTLED_ACTION = "audit.anonymous_throttled"
TEXT_LIMIT = 256
DEPTH_LIMIT = 8
DETAILS_LIMIT_BYTES = 4096
TRUNCATED_KEY = "_truncated"
# Room kept for the summary that replaces cut details: at most `_NAMED_OMISSIONS` names of at
# most `_OMISSION_NAME_LIMIT` characters (6 bytes each when escaped) and their descriptions.
_SUMMARY_RESERVE_BYTES = 1536
_NAMED_OMISSIONS = 4
_OMISSION_NAME_LIMIT = 48

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def bounded_text(value: str, limit: int = TEXT_LIMIT) -> str:
    """`value` with NUL and lone surrogates replaced, cut to `limit` characters with a marker
    that gives the original length."""
    value = _UNSTORABLE.sub("\ufffd", value)
    if len(value) <= limit:
        return value
    marker = f"…[truncated, {len(value)} chars]"
    return value[:limit - len(marker)] + marker


def _bounded(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return bounded_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict | list):
        if depth >= DEPTH_LIMIT:
            return f"[truncated: nested deeper than {DEPTH_LIMIT} levels]"
        if isinstance(value, list):
            return [_bounded(item, depth + 1) for item in value]
        return {bounded_text(str(key)): _bounded(item, depth + 1)
                for key, item in value.items()}
    return value


def _described(value: Any) -> str:
    if isinstance(value, dict):
        return f"object of {len(value)} entries"
    if isinstance(value, list):
        return f"list of {len(value)} items"
    if isinstance(value, str):
        return f"text of {len(value)} characters"
    return type(value).__name__


def bounded_details(details: dict[str, Any]) -> dict[str, Any]:
    """JSON-ready `details` within every bound. When the serialized result is still over
    `DETAILS_LIMIT_BYTES`, top-level entries are kept in order while they fit and the rest are
    named in a `_truncated` summary with the original size."""
    details = _bounded(details, 0)
    size = len(canonical_json(details))
    if size <= DETAILS_LIMIT_BYTES:
        return details
    budget = DETAILS_LIMIT_BYTES - _SUMMARY_RESERVE_BYTES
    kept: dict[str, Any] = {}
    omitted: dict[str, Any] = {}
    used = 2  # the braces
    for key, value in details.items():
        entry = len(canonical_json({key: value})) - 1  # its braces, less a comma
        if used + entry <= budget:
            kept[key] = value
            used += entry
        else:
            omitted[key] = value
    kept[TRUNCATED_KEY] = {
        "original_bytes": size,
        "omitted_count": len(omitted),
        "omitted": {bounded_text(key, _OMISSION_NAME_LIMIT): _described(value)
                    for key, value in list(omitted.items())[:_NAMED_OMISSIONS]},
    }
    return kept


# --- The anonymous actor's budgets ---------------------------------------------------------


def _client_key(client_ip: str | None) -> str:
    """IPv6 clients are counted per /64: one host usually holds a whole /64."""
    try:
        address = ipaddress.ip_address(client_ip or "")
    except ValueError:
        return "unknown"
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def _count(key: str) -> int:
    cache.add(key, 0, 120)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, 120)
        return 1


def anonymous_admission(*, action: str, client_ip: str | None) -> dict[str, Any] | None:
    """Whether an anonymous event may be written now.

    Returns {} to write it, None to drop it, or the details of the `audit.anonymous_throttled`
    event to write instead (once per client and once for everybody per minute). If the cache
    can't be reached, events are written: a complete trail matters more than the budget."""
    minute = int(time.time() // 60)
    per_client = settings.AUDIT_ANONYMOUS_EVENTS_PER_CLIENT_PER_MINUTE
    overall = settings.AUDIT_ANONYMOUS_EVENTS_PER_MINUTE
    client = _client_key(client_ip)
    try:
        client_count = _count(f"audit-anonymous:{minute}:{client}")
        if client_count > per_client + 1:
            return None
        total = _count(f"audit-anonymous:{minute}")
    except (OSError, RedisError):
        logger.warning("The audit's anonymous-event budget can't be checked; recording.",
                       exc_info=True)
        return {}
    if total > overall + 1:
        return None
    window = time.strftime("%Y-%m-%dT%H:%M:00Z", time.gmtime(minute * 60))
    if total == overall + 1:
        logger.warning("More than %s anonymous audit events this minute; the rest are not "
                       "recorded until the next minute.", overall)
        return {"scope": "all clients", "limit_per_minute": overall, "minute": window,
                "first_dropped_action": action}
    if client_count == per_client + 1:
        return {"scope": "client", "client": client, "limit_per_minute": per_client,
                "minute": window, "first_dropped_action": action}
    return {}
