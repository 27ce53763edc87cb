"""Usage and billing, one package per concern, each laid out like an app of its own
(`models`, `services` for writes, `selectors` for reads, `views`, `api`, `tasks`):

- `usage`: usage records drained from the gateway's stream, their seals in the audit chain,
  hourly and daily rollups, the dashboards and the usage API;
- `budgets`: budgets, their Redis counters, threshold alerts and the rules the gateway
  enforces (`budgets.gateway`);
- `notifications`: in-portal notifications, webhook endpoints and signed deliveries;
- `statements`: monthly statements, open and closed, as HTML, CSV and PDF.

Django loads the models from `billing.models`, Celery the tasks from `billing.tasks`; the
pages' URLs are in `billing.urls`, the API's in `billing.api_urls`.
"""
