"""What the portal learns from an identity provider over the network: its discovery
document and signing keys. Both are cached per process, so neither a page view nor an API
request waits for the provider, and a flood of bad tokens can't turn into a flood of
requests to it."""

from __future__ import annotations

import threading
import time
from urllib.parse import urlencode

import jwt
import requests
from django.conf import settings

from portal.oidc_settings import OidcProvider

HTTP_TIMEOUT_SECONDS = 5
# A token signed with a key id we don't know triggers a fresh JWKS fetch (the provider may
# have rotated keys), but at most this often per provider.
UNKNOWN_KID_REFETCH_SECONDS = 60

_lock = threading.Lock()
_discovery: dict[str, tuple[float, dict]] = {}
_keys: dict[str, tuple[float, jwt.PyJWKSet]] = {}


class ProviderUnavailable(Exception):
    """The provider could not be reached or answered nonsense."""


def _get_json(url: str) -> dict:
    try:
        response = requests.get(url, timeout=HTTP_TIMEOUT_SECONDS)
        response.raise_for_status()
        data = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise ProviderUnavailable(f"{url}: {exc}") from exc
    if not isinstance(data, dict):
        raise ProviderUnavailable(f"{url}: not a JSON object")
    return data


def discovery(provider: OidcProvider) -> dict:
    with _lock:
        cached = _discovery.get(provider.id)
    if cached and time.monotonic() - cached[0] < settings.OIDC_KEYS_CACHE_SECONDS:
        return cached[1]
    document = _get_json(provider.issuer.rstrip("/") + "/.well-known/openid-configuration")
    with _lock:
        _discovery[provider.id] = (time.monotonic(), document)
    return document


def signing_key(provider: OidcProvider, kid: str | None) -> jwt.PyJWK | None:
    """The provider's key with this key id, from the cached JWKS; None if it has none."""
    with _lock:
        cached = _keys.get(provider.id)
    age = time.monotonic() - cached[0] if cached else None
    if cached is None or age >= settings.OIDC_KEYS_CACHE_SECONDS:
        key_set = _fetch_keys(provider)
    else:
        key_set = cached[1]
        if _find(key_set, kid) is None and age >= UNKNOWN_KID_REFETCH_SECONDS:
            key_set = _fetch_keys(provider)
    return _find(key_set, kid)


def _find(key_set: jwt.PyJWKSet, kid: str | None) -> jwt.PyJWK | None:
    for key in key_set.keys:
        if kid is None or key.key_id == kid:
            return key
    return None


def _fetch_keys(provider: OidcProvider) -> jwt.PyJWKSet:
    jwks_uri = discovery(provider).get("jwks_uri")
    if not isinstance(jwks_uri, str):
        raise ProviderUnavailable(f"{provider.id}: discovery has no jwks_uri")
    try:
        key_set = jwt.PyJWKSet.from_dict(_get_json(jwks_uri))
    except jwt.PyJWKSetError as exc:
        raise ProviderUnavailable(f"{jwks_uri}: {exc}") from exc
    with _lock:
        _keys[provider.id] = (time.monotonic(), key_set)
    return key_set


def forget_all() -> None:
    """Drop every cached document and key (tests start each provider afresh)."""
    with _lock:
        _discovery.clear()
        _keys.clear()


def end_session_url(provider: OidcProvider, post_logout_redirect_uri: str) -> str:
    """Where to send the browser to end the provider's session too, or "" if it can't."""
    try:
        endpoint = discovery(provider).get("end_session_endpoint")
    except ProviderUnavailable:
        return ""
    if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
        return ""
    query = urlencode({"client_id": provider.client_id,
                       "post_logout_redirect_uri": post_logout_redirect_uri})
    return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"
