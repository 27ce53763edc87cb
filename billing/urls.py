from django.urls import path, re_path

from billing.budgets import views as budget_views
from billing.notifications import views as notification_views
from billing.statements import views as statement_views
from billing.usage import views as usage_views

app_name = "billing"

_MONTH = r"(?P<month>\d{4}-\d{2})"

urlpatterns = [
    path("t/<slug:tenant_slug>/budgets/", budget_views.budget_list, name="budgets"),
    path("t/<slug:tenant_slug>/budgets/new/", budget_views.budget_create, name="budget_create"),
    path("t/<slug:tenant_slug>/budgets/<int:pk>/edit/", budget_views.budget_edit,
         name="budget_edit"),
    path("t/<slug:tenant_slug>/budgets/<int:pk>/delete/", budget_views.budget_delete,
         name="budget_delete"),
    path("t/<slug:tenant_slug>/notifications/", notification_views.notification_list,
         name="notifications"),
    path("t/<slug:tenant_slug>/notifications/read/", notification_views.notifications_read,
         name="notifications_read"),
    path("t/<slug:tenant_slug>/webhooks/", notification_views.webhook_list, name="webhooks"),
    path("t/<slug:tenant_slug>/webhooks/new/", notification_views.webhook_create,
         name="webhook_create"),
    path("t/<slug:tenant_slug>/webhooks/<int:pk>/test/", notification_views.webhook_ping,
         name="webhook_ping"),
    path("t/<slug:tenant_slug>/webhooks/<int:pk>/delete/", notification_views.webhook_delete,
         name="webhook_delete"),
    path("t/<slug:tenant_slug>/statements/", statement_views.statement_list, name="statements"),
    re_path(rf"^t/(?P<tenant_slug>[-a-z0-9]+)/statements/{_MONTH}/$",
            statement_views.statement_detail, name="statement"),
    re_path(rf"^t/(?P<tenant_slug>[-a-z0-9]+)/statements/{_MONTH}\.(?P<fmt>csv|pdf)$",
            statement_views.statement_detail, name="statement_download"),
]

msp_urlpatterns = (
    [path("", statement_views.msp_statements, name="statements"),
     path("close/", statement_views.msp_statements_close, name="statements_close")],
    "billing_msp")

usage_urlpatterns = (
    [path("t/<slug:tenant_slug>/usage/", usage_views.tenant_usage, name="tenant"),
     path("msp/usage/", usage_views.platform_usage, name="platform")],
    "usage")
