"""Checkpoints and compliance reports, mounted at /compliance/."""

from django.urls import path

from audit import views

app_name = "compliance"

urlpatterns = [
    path("checkpoints/", views.checkpoint_list, name="checkpoints"),
    path("checkpoints/new/", views.checkpoint_create, name="checkpoint_create"),
    path("reports/", views.report_list, name="reports"),
    path("reports/new/", views.report_create, name="report_create"),
    path("reports/<int:pk>/retry/", views.report_retry, name="report_retry"),
    path("reports/<int:pk>/report.pdf", views.report_download, {"kind": "pdf"},
         name="report_pdf"),
    path("reports/<int:pk>/bundle.zip", views.report_download, {"kind": "bundle"},
         name="report_bundle"),
]
