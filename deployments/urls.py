from django.urls import path

from deployments import views

app_name = "deployments"

urlpatterns = [
    path("msp/clusters/", views.cluster_list, name="clusters"),
    path("msp/clusters/new/", views.cluster_create, name="cluster_create"),
    path("msp/clusters/<int:pk>/", views.cluster_detail, name="cluster"),
    path("msp/clusters/<int:pk>/edit/", views.cluster_edit, name="cluster_edit"),
    path("msp/clusters/<int:pk>/delete/", views.cluster_delete, name="cluster_delete"),
    path("msp/clusters/<int:pk>/check/", views.cluster_check, name="cluster_check"),
    path("msp/clusters/<int:pk>/namespaces/sync/", views.cluster_sync_namespaces,
         name="cluster_sync_namespaces"),
    path("msp/deployments/", views.deployment_list, name="list"),
    path("msp/deployments/new/", views.deployment_wizard, name="wizard"),
    path("msp/deployments/external/new/", views.external_endpoint_register,
         name="external_create"),
    path("msp/deployments/<int:pk>/endpoint/", views.external_endpoint_edit,
         name="external_edit"),
    path("msp/deployments/<int:pk>/", views.deployment_detail, name="detail"),
    path("msp/deployments/<int:pk>/check/", views.deployment_check, name="check"),
    path("msp/deployments/<int:pk>/manifest.yaml", views.deployment_manifest, name="manifest"),
    path("msp/deployments/<int:pk>/update/", views.deployment_update, name="update"),
    path("msp/deployments/<int:pk>/update/preview/", views.deployment_update_preview,
         name="update_preview"),
    path("msp/deployments/<int:pk>/scale/", views.deployment_scale, name="scale"),
    path("msp/llm-presets/", views.llm_preset_list, name="llm_presets"),
    path("msp/llm-presets/new/", views.llm_preset_create, name="llm_preset_create"),
    path("msp/llm-presets/<int:pk>/", views.llm_preset_detail, name="llm_preset"),
    path("msp/llm-presets/<int:pk>/edit/", views.llm_preset_edit, name="llm_preset_edit"),
    path("msp/llm-presets/<int:pk>/delete/", views.llm_preset_delete, name="llm_preset_delete"),
    path("t/<slug:tenant_slug>/deployments/", views.tenant_deployment_list, name="tenant_list"),
]
for _action in ("retry", "promote", "rollback", "stop", "start", "delete"):
    urlpatterns.append(path(f"msp/deployments/<int:pk>/{_action}/", views.deployment_action,
                            {"action": _action}, name=_action))
