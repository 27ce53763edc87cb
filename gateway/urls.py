from django.urls import path

from gateway import views

app_name = "gateway"

urlpatterns = [
    path("t/<slug:tenant_slug>/keys/", views.key_list, name="keys"),
    path("t/<slug:tenant_slug>/keys/new/", views.key_create, name="key_create"),
    path("t/<slug:tenant_slug>/keys/<int:pk>/revoke/", views.key_revoke, name="key_revoke"),
    path("t/<slug:tenant_slug>/keys/<int:pk>/rotate/", views.key_rotate, name="key_rotate"),
    path("t/<slug:tenant_slug>/keys/bulk-revoke/", views.key_bulk_revoke,
         name="key_bulk_revoke"),
    path("msp/keys/bulk-revoke/", views.model_keys_bulk_revoke, name="model_keys_bulk_revoke"),
    path("t/<slug:tenant_slug>/keys/<int:pk>/quota/", views.key_quota, name="key_quota"),
    path("t/<slug:tenant_slug>/playground/", views.playground, name="playground"),
    path("t/<slug:tenant_slug>/playground/quota/", views.playground_quota,
         name="playground_quota"),
    path("t/<slug:tenant_slug>/playground/token/", views.playground_token,
         name="playground_token"),
]
