"""Bearer tokens for the REST API: access tokens of the configured identity providers,
checked locally against the provider's published keys (signature, issuer, audience, expiry).

Only service accounts (client-credentials tokens of the clients listed in a provider's
`service_accounts`) are accepted: each acts in one tenant with one role. People use the
pages, where the level-of-assurance rules apply. The provider is never called per request
(see `tenants.oidc_metadata`), and rejected tokens are audited at most once each and at most
`OIDC_REJECTIONS_AUDITED_PER_MINUTE` a minute, so garbage can't flood the audit chain.
"""

from __future__ import annotations

import hashlib
import logging
import time

import jwt
from django.conf import settings
from django.core.cache import cache
from rest_framework import authentication, exceptions

import audit
from portal import request_context
from tenants import oidc_metadata
from tenants.models import Membership, Tenant

logger = logging.getLogger(__name__)

ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
              "EdDSA"]
REJECTION_DEDUPE_SECONDS = 3600


class ServiceAccount:
    """The principal of a request authenticated by a service account's token."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    is_service_account = True
    audit_actor_type = "system"

    def __init__(self, *, provider_id: str, client_id: str, membership: Membership):
        self.provider_id = provider_id
        self.client_id = client_id
        self.membership = membership
        self.pk = f"{provider_id}:{client_id}"
        self.email = ""

    @property
    def audit_label(self) -> str:
        return f"service-account:{self.pk}"

    @property
    def display_name(self) -> str:
        return self.audit_label

    def __str__(self) -> str:
        return self.audit_label


class TokenRejected(exceptions.AuthenticationFailed):
    issuer = ""


class OidcBearerAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate_header(self, request) -> str:
        return f'{self.keyword} realm="api"'

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            self._reject(request, b"", "the Authorization header must be 'Bearer <token>'")
        token = header[1]
        try:
            principal, claims = self._authenticate(token.decode("ascii"))
        except UnicodeDecodeError:
            self._reject(request, token, "the token is not a JWT")
        except TokenRejected as exc:
            self._reject(request, token, str(exc.detail), issuer=getattr(exc, "issuer", ""))
        request_context.update(actor=request_context.actor_label(principal),
                               tenant=principal.membership.tenant.slug)
        return principal, claims

    def _authenticate(self, token: str) -> tuple[ServiceAccount, dict]:
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenRejected("the token is not a JWT") from None
        issuer = str(unverified.get("iss", ""))
        provider = next((p for p in settings.OIDC_PROVIDERS if p.issuer == issuer), None)
        if provider is None or not provider.api_audience:
            raise _rejected(f"tokens of issuer {issuer!r} are not accepted here", issuer)
        try:
            key = oidc_metadata.signing_key(provider, header.get("kid"))
        except oidc_metadata.ProviderUnavailable:
            logger.warning("Can't load the signing keys of %s", provider.id, exc_info=True)
            raise _rejected(f"the signing keys of {provider.name} can't be loaded right now; "
                            "try again shortly", issuer) from None
        if key is None:
            raise _rejected("the token is signed with a key the issuer does not publish",
                            issuer)
        try:
            claims = jwt.decode(
                token, key=key, algorithms=ALGORITHMS, audience=provider.api_audience,
                issuer=provider.issuer, options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise _rejected("the token has expired", issuer) from None
        except jwt.InvalidAudienceError:
            raise _rejected(f"the token is not meant for this API (audience must be "
                            f"{provider.api_audience!r})", issuer) from None
        except jwt.InvalidIssuerError:
            raise _rejected("the token's issuer does not match", issuer) from None
        except jwt.InvalidSignatureError:
            raise _rejected("the token's signature is not valid", issuer) from None
        except jwt.PyJWTError as exc:
            raise _rejected(f"the token is not valid ({exc})", issuer) from None
        client_id = str(claims.get("client_id") or claims.get("azp") or "")
        account = provider.service_accounts.get(client_id)
        if account is None:
            raise _rejected(f"client {client_id!r} is not a service account of this portal",
                            issuer)
        tenant = Tenant.objects.filter(slug=account.tenant).first()
        if tenant is None or not tenant.is_active:
            raise _rejected(f"the tenant of service account {client_id!r} is missing or "
                            "suspended", issuer)
        membership = Membership(tenant=tenant, role=account.role, source=provider.source)
        return ServiceAccount(provider_id=provider.id, client_id=client_id,
                              membership=membership), claims

    def _reject(self, request, token: bytes, reason: str, issuer: str = ""):
        _audit_rejection(token, reason, issuer)
        raise exceptions.AuthenticationFailed(f"Bearer token rejected: {reason}.")


def _rejected(reason: str, issuer: str) -> TokenRejected:
    exc = TokenRejected(reason)
    exc.issuer = issuer
    return exc


def _audit_rejection(token: bytes, reason: str, issuer: str) -> None:
    digest = hashlib.sha256(token).hexdigest()[:32]
    if not cache.add(f"oidc-rejected:{digest}", 1, REJECTION_DEDUPE_SECONDS):
        return
    minute = int(time.time() // 60)
    budget_key = f"oidc-rejections:{minute}"
    cache.add(budget_key, 0, 120)
    try:
        count = cache.incr(budget_key)
    except ValueError:
        count = 1
    if count > settings.OIDC_REJECTIONS_AUDITED_PER_MINUTE:
        if count == settings.OIDC_REJECTIONS_AUDITED_PER_MINUTE + 1:
            logger.warning("More than %s bearer tokens rejected this minute; auditing paused "
                           "until the next minute.", settings.OIDC_REJECTIONS_AUDITED_PER_MINUTE)
        return
    audit.record(action="api.token_rejected", actor="anonymous",
                 details={"reason": reason, "issuer": issuer, "token_sha256": digest})
