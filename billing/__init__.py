"""Usage and billing: usage records and their rollups, dashboards, budgets and alerts,
webhooks and monthly statements."""
