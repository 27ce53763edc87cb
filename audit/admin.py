from django.contrib import admin

from audit.models import AuditEvent
from portal.admin import ReadOnlyAdmin


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["seq", "created_at", "action", "actor_label", "tenant_slug", "target_type"]
    list_filter = ["action"]
    search_fields = ["action", "actor_label", "tenant_slug", "target_id"]
