from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from billing import urls as billing_urls
from portal import health
from tenants import views as tenant_views

# The schema needs a session or a bearer token (SPECTACULAR_SETTINGS["SERVE_PERMISSIONS"]);
# the docs page sends a browser without a session to the sign-in first.
api_docs = SpectacularSwaggerSplitView.as_view(url_name="api-schema")
if not settings.API_DOCS_PUBLIC:
    api_docs = login_required(api_docs)

urlpatterns = [
    path("", tenant_views.home, name="home"),
    path("", include("tenants.urls")),
    path("", include("gateway.urls")),
    path("", include("models_catalog.urls")),
    path("", include("billing.urls")),
    path("", include(billing_urls.usage_urlpatterns)),
    path("msp/statements/", include(billing_urls.msp_urlpatterns)),
    path("", include("deployments.urls")),
    path("", include("portal.demo.urls")),
    path("invitations/<str:token>/", tenant_views.invitation_accept, name="invitation_accept"),
    path("audit/", include("audit.urls")),
    path("t/<slug:tenant_slug>/audit/", include("audit.tenant_urls")),
    path("compliance/", include("audit.compliance_urls")),
    path("accounts/identity/", tenant_views.identity_page, name="identity"),
    path("accounts/oidc/<str:provider_id>/login/", tenant_views.provider_login,
         name="oidc_provider_login"),
    path("accounts/", include("allauth.urls")),
    path("api/", include("tenants.api_urls")),
    path("api/", include("gateway.api_urls")),
    path("api/", include("billing.api_urls")),
    path("api/", include("audit.api_urls")),
    path("api/", include("models_catalog.api_urls")),
    path("api/", include("deployments.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", api_docs, name="api-docs"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
]

handler404 = "portal.errors.not_found"
handler403 = "portal.errors.forbidden"
handler500 = "portal.errors.server_error"
