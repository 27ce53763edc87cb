from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "tenants"
    verbose_name = "Tenants and people"

    def ready(self) -> None:
        from tenants import (
            auth_events,  # noqa: F401  (connects the sign-in receivers)
            report_sections,  # noqa: F401  (registers the access review)
            schema,  # noqa: F401  (describes bearer tokens in the OpenAPI schema)
        )
