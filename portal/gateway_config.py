"""A version number every gateway worker watches, so a change in the portal (a revoked key, a
new route) reaches every worker within a second without a database query per request."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)

CONFIG_VERSION_KEY = "gateway:config-version"


def _bump() -> None:
    import redis

    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2).incr(CONFIG_VERSION_KEY)
    except redis.RedisError:
        # The gateway's caches also expire on their own (GATEWAY_CACHE_TTL), so the change
        # still arrives; it just takes up to that long.
        logger.warning("Could not notify gateway workers of a configuration change.")


def bump_gateway_config() -> None:
    """Tell gateway workers to reload once the current transaction commits."""
    if settings.REDIS_URL:
        transaction.on_commit(_bump)
