from django.urls import path

from billing import usage_api as api

urlpatterns = [
    path("tenants/<slug:slug>/usage/", api.TenantUsageApi.as_view(), name="api-tenant-usage"),
    path("usage/", api.PlatformUsageApi.as_view(), name="api-platform-usage"),
]
