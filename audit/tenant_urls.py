"""A tenant's slice of the audit trail, mounted at /t/<tenant_slug>/audit/."""

from django.urls import path

from audit import views

app_name = "tenant_audit"

urlpatterns = [
    path("", views.tenant_event_list, name="list"),
    path("events/<int:seq>/", views.tenant_event_detail, name="event"),
    path("export.<str:fmt>", views.tenant_event_export, name="export"),
]
