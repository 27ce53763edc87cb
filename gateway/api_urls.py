from django.urls import path

from gateway import api

urlpatterns = [
    path("tenants/<slug:slug>/keys/", api.ApiKeyListApi.as_view(), name="api-keys"),
    path("tenants/<slug:slug>/keys/bulk-revoke/", api.ApiKeyBulkRevokeApi.as_view(),
         name="api-keys-bulk-revoke"),
    path("models/<slug:slug>/keys/bulk-revoke/", api.ModelKeysBulkRevokeApi.as_view(),
         name="api-model-keys-bulk-revoke"),
    path("tenants/<slug:slug>/keys/<int:pk>/", api.ApiKeyDetailApi.as_view(), name="api-key"),
    path("tenants/<slug:slug>/keys/<int:pk>/revoke/", api.ApiKeyRevokeApi.as_view(),
         name="api-key-revoke"),
    path("tenants/<slug:slug>/keys/<int:pk>/rotate/", api.ApiKeyRotateApi.as_view(),
         name="api-key-rotate"),
]
