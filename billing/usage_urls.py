from django.urls import path

from billing import usage_views as views

app_name = "usage"

urlpatterns = [
    path("t/<slug:tenant_slug>/usage/", views.tenant_usage, name="tenant"),
    path("msp/usage/", views.platform_usage, name="platform"),
]
