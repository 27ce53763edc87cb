from django.urls import path

from models_catalog import api

version = "models/<slug:slug>/versions/<str:version>/"

urlpatterns = [
    path("models/", api.ModelListApi.as_view(), name="api-models"),
    path("models/<slug:slug>/", api.ModelDetailApi.as_view(), name="api-model"),
    path("models/<slug:slug>/entitlements/", api.ModelEntitlementsApi.as_view(),
         name="api-model-entitlements"),
    path("models/<slug:slug>/annex-xii/", api.ModelAnnexXIIApi.as_view(),
         name="api-model-annex-xii"),
    path("models/<slug:slug>/prices/", api.ModelPriceApi.as_view(), name="api-model-prices"),
    path("models/<slug:slug>/lifecycle/", api.ModelLifecycleApi.as_view(),
         name="api-model-lifecycle"),
    path("models/<slug:slug>/versions/", api.VersionListApi.as_view(), name="api-versions"),
    path(version, api.VersionDetailApi.as_view(), name="api-version"),
    path(version + "lineage/", api.VersionLineageApi.as_view(), name="api-version-lineage"),
    path("provenance/", api.ProvenanceApi.as_view(), name="api-provenance"),
    path("provenance/export/", api.ProvenanceExportApi.as_view(),
         name="api-provenance-export"),
    path(version + "upload/", api.UploadCreateApi.as_view(), name="api-version-upload"),
    path(version + "reference/", api.VersionReferenceApi.as_view(),
         name="api-version-reference"),
    path(version + "submit/", api.VersionSubmitApi.as_view(), name="api-version-submit"),
    path(version + "approve/", api.VersionApproveApi.as_view(), name="api-version-approve"),
    path(version + "reject/", api.VersionRejectApi.as_view(), name="api-version-reject"),
    path(version + "lifecycle/", api.VersionLifecycleApi.as_view(),
         name="api-version-lifecycle"),
    path(version + "verify/", api.VersionVerifyApi.as_view(), name="api-version-verify"),
    path(version + "sbom/", api.VersionSbomApi.as_view(), name="api-version-sbom"),
    path(version + "scan-report/", api.VersionScanReportApi.as_view(),
         name="api-version-scan-report"),
    path("uploads/<uuid:pk>/", api.UploadChunkApi.as_view(), name="api-upload"),
    path("uploads/<uuid:pk>/complete/", api.UploadCompleteApi.as_view(),
         name="api-upload-complete"),
    path("tenants/<slug:tenant_slug>/models/", api.TenantModelListApi.as_view(),
         name="api-tenant-models"),
    path("tenants/<slug:tenant_slug>/models/<slug:slug>/", api.TenantModelDetailApi.as_view(),
         name="api-tenant-model"),
]
