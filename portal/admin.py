from django.contrib import admin


class ReadOnlyAdmin(admin.ModelAdmin):
    """Django's admin is for looking only: every change goes through the audited services."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
