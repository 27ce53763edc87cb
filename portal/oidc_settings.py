"""The identity providers of the portal, parsed and checked at start-up.

`portal/settings.py` reads `OIDC_PROVIDERS` (or the file named by `OIDC_PROVIDERS_FILE`) and
hands the JSON text here; every mistake becomes an `ImproperlyConfigured` that names the
variable and the provider, so a typo never surfaces as a failed login hours later. No Django
models are imported: settings load before the apps.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

# The role names of tenants.models, repeated because settings load before models; a test
# keeps the two in step.
TENANT_ROLES = ("tenant_admin", "developer", "viewer")
PLATFORM_ROLES = ("msp_admin", "compliance_officer")
UNKNOWN_ORGANIZATION_POLICIES = ("refuse", "create_suspended")

_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")
_KNOWN_KEYS = {
    "id", "name", "issuer", "client_id", "client_secret", "client_secret_file", "scopes",
    "acr_values", "acr_levels", "min_acr", "organization_claim", "groups_claim",
    "group_prefix", "role_claims", "platform_roles", "tenant_roles", "default_tenant_role",
    "unknown_organization", "new_tenant_jurisdiction", "require_local_mfa", "api_audience",
    "service_accounts", "token_auth_method",
}


@dataclass(frozen=True)
class ServiceAccount:
    tenant: str
    role: str


@dataclass(frozen=True)
class OidcProvider:
    id: str
    name: str
    issuer: str
    client_id: str
    client_secret: str
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    acr_values: str = ""
    acr_levels: tuple[str, ...] = ()
    min_acr: dict[str, str] = field(default_factory=dict)
    organization_claim: str = "organization"
    groups_claim: str = "groups"
    group_prefix: str = "/tenants/"
    role_claims: tuple[str, ...] = ("realm_access.roles",)
    platform_roles: dict[str, str] = field(default_factory=dict)
    tenant_roles: dict[str, str] = field(default_factory=dict)
    default_tenant_role: str = "viewer"
    unknown_organization: str = "refuse"
    new_tenant_jurisdiction: str = ""
    require_local_mfa: bool = False
    api_audience: str = ""
    service_accounts: dict[str, ServiceAccount] = field(default_factory=dict)
    token_auth_method: str = ""

    @property
    def source(self) -> str:
        """The `source` of memberships and grants this provider's claims manage."""
        return f"oidc:{self.id}"

    def acr_rank(self, acr: str | None) -> int:
        """Position of `acr` in the ordered levels; unknown or missing ranks below all."""
        try:
            return self.acr_levels.index(acr or "")
        except ValueError:
            return -1

    def allauth_app(self) -> dict:
        app_settings = {
            "server_url": self.issuer,
            "oauth_pkce_enabled": True,
            "scope": list(self.scopes),
        }
        if self.acr_values:
            app_settings["auth_params"] = {"acr_values": self.acr_values}
        if self.token_auth_method:
            app_settings["token_auth_method"] = self.token_auth_method
        return {
            "provider_id": self.id,
            "name": self.name,
            "client_id": self.client_id,
            "secret": self.client_secret,
            "settings": app_settings,
        }


def _fail(variable: str, provider: str, message: str):
    where = f"provider {provider!r}" if provider else "the list"
    raise ImproperlyConfigured(f"{variable}: {where}: {message}")


def _text(raw: dict, key: str, variable: str, pid: str, *, required=False, default="") -> str:
    value = raw.get(key, default)
    if not isinstance(value, str):
        _fail(variable, pid, f"{key!r} must be a string.")
    if required and not value.strip():
        _fail(variable, pid, f"{key!r} is required.")
    return value.strip()


def _strings(raw: dict, key: str, variable: str, pid: str, default: tuple) -> tuple[str, ...]:
    value = raw.get(key, list(default))
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        _fail(variable, pid, f"{key!r} must be a list of non-empty strings.")
    return tuple(value)


def _mapping(raw: dict, key: str, variable: str, pid: str, allowed: tuple) -> dict[str, str]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        _fail(variable, pid, f"{key!r} must be an object.")
    for name, role in value.items():
        if role not in allowed:
            _fail(variable, pid, f"{key}[{name!r}] = {role!r}: use one of {', '.join(allowed)}.")
    return dict(value)


def _secret(raw: dict, variable: str, pid: str) -> str:
    secret = raw.get("client_secret")
    path = raw.get("client_secret_file")
    if secret and path:
        _fail(variable, pid, "set either 'client_secret' or 'client_secret_file', not both.")
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            _fail(variable, pid, f"cannot read client_secret_file {path!r} ({exc.strerror}).")
    if not isinstance(secret, str) or not secret:
        _fail(variable, pid, "'client_secret' (or 'client_secret_file') is required.")
    return secret


def _provider_id(raw: dict, variable: str, index: int) -> str:
    """The `id` of entry #`index + 1`, once the entry is an object of known keys only."""
    if not isinstance(raw, dict):
        _fail(variable, "", f"entry #{index + 1} must be an object.")
    pid = raw.get("id")
    if not isinstance(pid, str) or not _ID.match(pid):
        _fail(variable, str(pid or f"#{index + 1}"),
              "'id' must be 1–40 lowercase letters, digits and hyphens.")
    unknown = set(raw) - _KNOWN_KEYS
    if unknown:
        _fail(variable, pid, f"unknown keys {', '.join(sorted(unknown))}.")
    return pid


def _min_acr(raw: dict, variable: str, pid: str, acr_levels: tuple[str, ...]) -> dict[str, str]:
    """`min_acr`: role → the lowest of the provider's `acr_levels` that role needs."""
    min_acr = raw.get("min_acr", {})
    if not isinstance(min_acr, dict):
        _fail(variable, pid, "'min_acr' must be an object of role → acr.")
    for role, acr in min_acr.items():
        if role not in TENANT_ROLES + PLATFORM_ROLES:
            _fail(variable, pid, f"min_acr: unknown role {role!r}.")
        if acr not in acr_levels:
            _fail(variable, pid, f"min_acr[{role!r}] = {acr!r} is not one of 'acr_levels'.")
    return dict(min_acr)


def _sign_in_policy(raw: dict, variable: str, pid: str) -> dict:
    """The `OidcProvider` fields on how a sign-in is let in: the tenant role granted by
    default, what happens to an organization the portal does not know (and the jurisdiction
    of a tenant created for it), and whether the portal's own MFA is needed on top."""
    default_role = _text(raw, "default_tenant_role", variable, pid, default="viewer")
    if default_role not in TENANT_ROLES:
        _fail(variable, pid, f"'default_tenant_role' must be one of {', '.join(TENANT_ROLES)}.")
    policy = _text(raw, "unknown_organization", variable, pid, default="refuse")
    if policy not in UNKNOWN_ORGANIZATION_POLICIES:
        _fail(variable, pid, "'unknown_organization' must be 'refuse' or 'create_suspended'.")
    jurisdiction = _text(raw, "new_tenant_jurisdiction", variable, pid)
    if policy == "create_suspended" and not jurisdiction:
        _fail(variable, pid, "'create_suspended' needs 'new_tenant_jurisdiction' (e.g. DE).")
    require_mfa = raw.get("require_local_mfa", False)
    if not isinstance(require_mfa, bool):
        _fail(variable, pid, "'require_local_mfa' must be true or false.")
    return {"default_tenant_role": default_role, "unknown_organization": policy,
            "new_tenant_jurisdiction": jurisdiction, "require_local_mfa": require_mfa}


def _api_access(raw: dict, variable: str, pid: str) -> dict:
    """The `OidcProvider` fields for machine clients of the API: `service_accounts` (client
    id → the tenant and role its tokens act with) and the `api_audience` those tokens carry."""
    accounts = raw.get("service_accounts", {})
    if not isinstance(accounts, dict):
        _fail(variable, pid, "'service_accounts' must be an object of client id → account.")
    service_accounts = {}
    for client, spec in accounts.items():
        if (not isinstance(spec, dict) or not isinstance(spec.get("tenant"), str)
                or spec.get("role") not in TENANT_ROLES):
            _fail(variable, pid, f"service_accounts[{client!r}] needs 'tenant' (a slug) and "
                                 f"'role' ({', '.join(TENANT_ROLES)}).")
        service_accounts[client] = ServiceAccount(tenant=spec["tenant"], role=spec["role"])
    api_audience = _text(raw, "api_audience", variable, pid)
    if service_accounts and not api_audience:
        _fail(variable, pid, "'service_accounts' need 'api_audience' (the API's token audience).")
    return {"service_accounts": service_accounts, "api_audience": api_audience}


def _provider(raw: dict, variable: str, index: int) -> OidcProvider:
    """Entry #`index + 1` of the list, checked key by key; the first mistake raises."""
    pid = _provider_id(raw, variable, index)
    issuer = _text(raw, "issuer", variable, pid, required=True)
    if not issuer.startswith(("https://", "http://")):
        _fail(variable, pid, f"'issuer' {issuer!r} must be an http(s) URL.")
    acr_levels = _strings(raw, "acr_levels", variable, pid, ())
    min_acr = _min_acr(raw, variable, pid, acr_levels)
    sign_in_policy = _sign_in_policy(raw, variable, pid)
    api_access = _api_access(raw, variable, pid)
    scopes = _strings(raw, "scopes", variable, pid, ("openid", "email", "profile"))
    if "openid" not in scopes:
        _fail(variable, pid, "'scopes' must include 'openid'.")
    token_auth_method = _text(raw, "token_auth_method", variable, pid)
    if token_auth_method not in ("", "client_secret_basic", "client_secret_post"):
        _fail(variable, pid, "'token_auth_method' must be client_secret_basic or _post.")
    return OidcProvider(
        id=pid,
        name=_text(raw, "name", variable, pid, required=True),
        issuer=issuer,
        client_id=_text(raw, "client_id", variable, pid, required=True),
        client_secret=_secret(raw, variable, pid),
        scopes=scopes,
        acr_values=_text(raw, "acr_values", variable, pid),
        acr_levels=acr_levels,
        min_acr=min_acr,
        organization_claim=_text(raw, "organization_claim", variable, pid,
                                 default="organization"),
        groups_claim=_text(raw, "groups_claim", variable, pid, default="groups"),
        group_prefix=_text(raw, "group_prefix", variable, pid, default="/tenants/"),
        role_claims=_strings(raw, "role_claims", variable, pid, ("realm_access.roles",)),
        platform_roles=_mapping(raw, "platform_roles", variable, pid, PLATFORM_ROLES),
        tenant_roles=_mapping(raw, "tenant_roles", variable, pid, TENANT_ROLES),
        **sign_in_policy,
        **api_access,
        token_auth_method=token_auth_method,
    )


def parse_providers(text: str, variable: str = "OIDC_PROVIDERS") -> tuple[OidcProvider, ...]:
    """Parse the JSON list of providers; an empty text means none."""
    if not text.strip():
        return ()
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImproperlyConfigured(f"{variable} is not valid JSON ({exc}).") from None
    if not isinstance(raw, list):
        raise ImproperlyConfigured(f"{variable} must be a JSON list of providers.")
    providers = tuple(_provider(item, variable, i) for i, item in enumerate(raw))
    seen: set[str] = set()
    issuers: set[str] = set()
    for provider in providers:
        if provider.id in seen:
            _fail(variable, provider.id, "the id is used twice.")
        if provider.issuer in issuers:
            # A SocialAccount's uid is the `sub`, scoped by the provider id: one issuer per id
            # keeps (issuer, sub) unique.
            _fail(variable, provider.id, f"issuer {provider.issuer!r} is configured twice.")
        seen.add(provider.id)
        issuers.add(provider.issuer)
    return providers
