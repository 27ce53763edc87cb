from django.urls import path

from tenants import api

urlpatterns = [
    path("tenants/", api.TenantListApi.as_view(), name="api-tenants"),
    path("tenants/<slug:slug>/", api.TenantDetailApi.as_view(), name="api-tenant"),
    path("tenants/<slug:slug>/suspend/", api.TenantSuspendApi.as_view(),
         name="api-tenant-suspend"),
    path("tenants/<slug:slug>/reactivate/", api.TenantReactivateApi.as_view(),
         name="api-tenant-reactivate"),
    path("tenants/<slug:slug>/members/", api.MemberListApi.as_view(), name="api-members"),
    path("tenants/<slug:slug>/members/<int:pk>/", api.MemberDetailApi.as_view(),
         name="api-member"),
    path("tenants/<slug:slug>/invitations/", api.InvitationListApi.as_view(),
         name="api-invitations"),
    path("tenants/<slug:slug>/invitations/<int:pk>/", api.InvitationDetailApi.as_view(),
         name="api-invitation"),
]
