from django.urls import path, re_path

from billing.budgets import views
from billing.usage import views as usage_views

app_name = "billing"

urlpatterns = [
    path("t/<slug:tenant_slug>/budgets/", views.budget_list, name="budgets"),
    path("t/<slug:tenant_slug>/budgets/new/", views.budget_create, name="budget_create"),
    path("t/<slug:tenant_slug>/budgets/<int:pk>/edit/", views.budget_edit, name="budget_edit"),
    path("t/<slug:tenant_slug>/budgets/<int:pk>/delete/", views.budget_delete,
         name="budget_delete"),
    path("t/<slug:tenant_slug>/notifications/", views.notification_list, name="notifications"),
    path("t/<slug:tenant_slug>/notifications/read/", views.notifications_read,
         name="notifications_read"),
    path("t/<slug:tenant_slug>/webhooks/", views.webhook_list, name="webhooks"),
    path("t/<slug:tenant_slug>/webhooks/new/", views.webhook_create, name="webhook_create"),
    path("t/<slug:tenant_slug>/webhooks/<int:pk>/test/", views.webhook_ping,
         name="webhook_ping"),
    path("t/<slug:tenant_slug>/webhooks/<int:pk>/delete/", views.webhook_delete,
         name="webhook_delete"),
    path("t/<slug:tenant_slug>/statements/", views.statement_list, name="statements"),
    re_path(r"^t/(?P<tenant_slug>[-a-z0-9]+)/statements/(?P<month>\d{4}-\d{2})/$",
            views.statement_detail, name="statement"),
    re_path(r"^t/(?P<tenant_slug>[-a-z0-9]+)/statements/(?P<month>\d{4}-\d{2})\.(?P<fmt>csv|pdf)$",
            views.statement_detail, name="statement_download"),
]

msp_urlpatterns = (
    [path("", views.msp_statements, name="statements"),
     path("close/", views.msp_statements_close, name="statements_close")],
    "billing_msp")

usage_urlpatterns = (
    [path("t/<slug:tenant_slug>/usage/", usage_views.tenant_usage, name="tenant"),
     path("msp/usage/", usage_views.platform_usage, name="platform")],
    "usage")
