from django.urls import path

from tenants import views
from tenants.models import TenantStatus

app_name = "tenants"

urlpatterns = [
    # MSP admin
    path("msp/tenants/", views.tenant_list, name="list"),
    path("msp/tenants/new/", views.tenant_create, name="create"),
    path("msp/tenants/<slug:tenant_slug>/", views.tenant_detail, name="detail"),
    path("msp/tenants/<slug:tenant_slug>/edit/", views.tenant_edit, name="edit"),
    path("msp/tenants/<slug:tenant_slug>/suspend/", views.tenant_set_status,
         {"status": TenantStatus.SUSPENDED}, name="suspend"),
    path("msp/tenants/<slug:tenant_slug>/reactivate/", views.tenant_set_status,
         {"status": TenantStatus.ACTIVE}, name="reactivate"),
    path("msp/tenants/<slug:tenant_slug>/members/<int:pk>/second-factor/reset/",
         views.member_second_factor_reset, name="member_second_factor_reset"),
    # Tenant members
    path("t/<slug:tenant_slug>/", views.tenant_overview, name="overview"),
    path("t/<slug:tenant_slug>/members/", views.member_list, name="members"),
    path("t/<slug:tenant_slug>/members/invite/", views.member_invite, name="member_invite"),
    path("t/<slug:tenant_slug>/members/<int:pk>/role/", views.member_change_role,
         name="member_role"),
    path("t/<slug:tenant_slug>/members/<int:pk>/remove/", views.member_remove,
         name="member_remove"),
    path("t/<slug:tenant_slug>/invitations/<int:pk>/revoke/", views.invitation_revoke,
         name="invitation_revoke"),
]
