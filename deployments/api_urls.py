from django.urls import path

from deployments import api

urlpatterns = [
    path("clusters/", api.ClusterListApi.as_view(), name="api-clusters"),
    path("clusters/<int:pk>/", api.ClusterDetailApi.as_view(), name="api-cluster"),
    path("clusters/<int:pk>/check/", api.ClusterCheckApi.as_view(), name="api-cluster-check"),
    path("clusters/<int:pk>/namespaces/", api.ClusterNamespaceListApi.as_view(),
         name="api-cluster-namespaces"),
    path("clusters/<int:pk>/namespaces/sync/", api.ClusterNamespaceSyncApi.as_view(),
         name="api-cluster-namespaces-sync"),
    path("deployments/", api.DeploymentListApi.as_view(), name="api-deployments"),
    path("deployments/gpu-allocation/", api.GpuAllocationApi.as_view(),
         name="api-gpu-allocation"),
    path("deployments/external/", api.ExternalEndpointCreateApi.as_view(),
         name="api-deployments-external"),
    path("deployments/<int:pk>/", api.DeploymentDetailApi.as_view(), name="api-deployment"),
    path("deployments/<int:pk>/endpoint/", api.ExternalEndpointUpdateApi.as_view(),
         name="api-deployment-endpoint"),
    path("deployments/<int:pk>/check/", api.ExternalEndpointCheckApi.as_view(),
         name="api-deployment-check"),
    path("deployments/<int:pk>/manifest/", api.DeploymentManifestApi.as_view(),
         name="api-deployment-manifest"),
    path("deployments/<int:pk>/update/", api.DeploymentUpdateApi.as_view(),
         name="api-deployment-update"),
    path("deployments/<int:pk>/scale/", api.DeploymentScaleApi.as_view(),
         name="api-deployment-scale"),
    path("llm-presets/", api.LLMPresetListApi.as_view(), name="api-llm-presets"),
    path("llm-presets/<int:pk>/", api.LLMPresetDetailApi.as_view(), name="api-llm-preset"),
    path("tenants/<slug:slug>/deployments/", api.TenantDeploymentListApi.as_view(),
         name="api-tenant-deployments"),
]
for _action in ("retry", "promote", "rollback", "stop", "start"):
    urlpatterns.append(path(
        f"deployments/<int:pk>/{_action}/",
        api.DeploymentActionApi.as_view(action_name=_action),
        name=f"api-deployment-{_action}"))
