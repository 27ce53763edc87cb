"""How the OpenAPI schema describes the portal's own authentication classes."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class OidcBearerScheme(OpenApiAuthenticationExtension):
    target_class = "tenants.bearer.OidcBearerAuthentication"
    name = "oidcBearer"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
            "description": "An access token from a configured OpenID Provider, for a service "
                           "account registered in the portal (client-credentials grant).",
        }
