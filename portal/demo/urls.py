from django.urls import path

from portal.demo import views

app_name = "demo"
urlpatterns = [path("demo/model-status/", views.status, name="status")]
