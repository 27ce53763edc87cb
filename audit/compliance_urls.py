"""Checkpoints and compliance reports, mounted at /compliance/."""

from django.urls import path

from audit import views

app_name = "compliance"

urlpatterns = [
    path("checkpoints/", views.checkpoint_list, name="checkpoints"),
    path("checkpoints/new/", views.checkpoint_create, name="checkpoint_create"),
]
