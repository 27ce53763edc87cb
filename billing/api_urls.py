from django.urls import path, re_path

from billing.budgets import api as budget_api
from billing.statements import api as statement_api
from billing.usage import api as usage_api

_MONTH = r"(?P<month>\d{4}-\d{2})"

urlpatterns = [
    path("tenants/<slug:slug>/budgets/", budget_api.BudgetListApi.as_view(), name="api-budgets"),
    path("tenants/<slug:slug>/budgets/<int:pk>/", budget_api.BudgetDetailApi.as_view(),
         name="api-budget"),
    path("tenants/<slug:slug>/budget-alerts/", budget_api.BudgetAlertListApi.as_view(),
         name="api-budget-alerts"),
    path("tenants/<slug:slug>/statements/", statement_api.StatementListApi.as_view(),
         name="api-statements"),
    re_path(rf"^tenants/(?P<slug>[-a-z0-9]+)/statements/{_MONTH}/$",
            statement_api.StatementDetailApi.as_view(), name="api-statement"),
    re_path(rf"^tenants/(?P<slug>[-a-z0-9]+)/statements/{_MONTH}\.csv$",
            statement_api.StatementCsvApi.as_view(), name="api-statement-csv"),
    path("tenants/<slug:slug>/usage/", usage_api.TenantUsageApi.as_view(),
         name="api-tenant-usage"),
    path("usage/", usage_api.PlatformUsageApi.as_view(), name="api-platform-usage"),
]
