from django.contrib import admin

from portal.admin import ReadOnlyAdmin
from tenants.models import Invitation, Membership, OidcLogin, PlatformRoleGrant, Tenant, User


@admin.register(User)
class UserAdmin(ReadOnlyAdmin):
    list_display = ["email", "first_name", "last_name", "is_active", "last_login"]
    search_fields = ["email", "first_name", "last_name"]
    exclude = ["password"]


@admin.register(Tenant)
class TenantAdmin(ReadOnlyAdmin):
    list_display = ["name", "slug", "status", "jurisdiction", "created_at"]
    search_fields = ["name", "slug"]


@admin.register(Membership)
class MembershipAdmin(ReadOnlyAdmin):
    list_display = ["user", "tenant", "role", "source"]
    list_filter = ["role"]


@admin.register(Invitation)
class InvitationAdmin(ReadOnlyAdmin):
    list_display = ["email", "tenant", "role", "created_at", "accepted_at", "revoked_at"]
    exclude = ["token_hash"]


@admin.register(PlatformRoleGrant)
class PlatformRoleGrantAdmin(ReadOnlyAdmin):
    list_display = ["user", "role", "source", "granted_at"]


@admin.register(OidcLogin)
class OidcLoginAdmin(ReadOnlyAdmin):
    list_display = ["user", "provider_id", "acr", "mfa", "logged_in_at"]
    list_filter = ["provider_id", "mfa"]
    search_fields = ["user__email", "subject"]
