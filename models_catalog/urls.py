from django.urls import path

from models_catalog import views

app_name = "models_catalog"

version = "catalog/<slug:model_slug>/v/<str:version>/"

urlpatterns = [
    path("t/<slug:tenant_slug>/models/", views.tenant_catalog, name="tenant_catalog"),
    path("t/<slug:tenant_slug>/models/<slug:model_slug>/", views.tenant_model,
         name="tenant_model"),
    path("t/<slug:tenant_slug>/models/<slug:model_slug>/v/<str:version>/sbom/",
         views.tenant_sbom, name="tenant_sbom"),
    path("t/<slug:tenant_slug>/models/<slug:model_slug>/v/<str:version>/model-signature/",
         views.tenant_model_signature, name="tenant_model_signature"),
    path("catalog/", views.catalog, name="catalog"),
    path("catalog/upload/", views.upload_start, name="upload_start"),
    path("catalog/provenance/", views.provenance, name="provenance"),
    path("catalog/provenance/export/", views.provenance_export, name="provenance_export"),
    path("catalog/model-signing-key.pem", views.model_signing_key, name="model_signing_key"),
    path("catalog/<slug:model_slug>/", views.model_detail, name="model"),
    path("catalog/<slug:model_slug>/entitlements/", views.model_entitlements,
         name="model_entitlements"),
    path("catalog/<slug:model_slug>/prices/", views.model_price, name="model_price"),
    path("catalog/<slug:model_slug>/lifecycle/", views.model_lifecycle, name="model_lifecycle"),
    path("catalog/<slug:model_slug>/card/", views.model_card, name="model_card"),
    path("catalog/<slug:model_slug>/annex-xii/", views.model_annex_xii, name="model_annex_xii"),
    path(version, views.version_detail, name="version"),
    path(version + "progress/", views.version_progress, name="version_progress"),
    path(version + "reference/", views.version_reference, name="version_reference"),
    path(version + "lineage/", views.version_lineage, name="version_lineage"),
    path(version + "submit/", views.version_submit, name="version_submit"),
    path(version + "approve/", views.version_approve, name="version_approve"),
    path(version + "reject/", views.version_reject, name="version_reject"),
    path(version + "retry/", views.version_retry, name="version_retry"),
    path(version + "lifecycle/", views.version_lifecycle, name="version_lifecycle"),
    path(version + "verify/", views.version_verify, name="version_verify"),
    path(version + "sbom/", views.version_sbom, name="version_sbom"),
    path(version + "model-signature/", views.version_model_signature,
         name="version_model_signature"),
    path(version + "scan-report/", views.version_scan_report, name="version_scan_report"),
]
