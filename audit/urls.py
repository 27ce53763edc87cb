from django.urls import path

from audit import views

app_name = "audit"

urlpatterns = [
    path("", views.event_list, name="list"),
    path("events/<int:seq>/", views.event_detail, name="event"),
    path("export.<str:fmt>", views.event_export, name="export"),
    path("public-key.pem", views.public_key, name="public_key"),
]
