from django.urls import path

from audit import api

urlpatterns = [
    path("audit/events/", api.AuditEventListApi.as_view(), name="api-audit-events"),
    path("audit/events/<int:seq>/", api.AuditEventDetailApi.as_view(), name="api-audit-event"),
    path("audit/checkpoints/", api.CheckpointListApi.as_view(), name="api-audit-checkpoints"),
    path("audit/checkpoints/<int:seq>/", api.CheckpointDetailApi.as_view(),
         name="api-audit-checkpoint"),
    path("tenants/<slug:slug>/audit/events/", api.TenantAuditEventListApi.as_view(),
         name="api-tenant-audit-events"),
]
