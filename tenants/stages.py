"""allauth login stages of the portal."""

from allauth.mfa import stages as mfa_stages

from tenants import identity


class AuthenticateStage(mfa_stages.AuthenticateStage):
    """Ask for the portal's own second factor after a provider sign-in only where the
    provider is configured to need it (`require_local_mfa`): eIDs and Keycloak realms usually
    did multi-factor authentication already, and asking twice teaches people to click through."""

    def _should_handle(self, request) -> bool:
        sociallogin = (self.login.signal_kwargs or {}).get("sociallogin")
        if sociallogin is not None:
            provider = identity.provider_get(sociallogin.account.provider)
            if provider is not None and not provider.require_local_mfa:
                return False
        return super()._should_handle(request)
