from django.apps import AppConfig


class DeploymentsConfig(AppConfig):
    name = "deployments"
    verbose_name = "Deployments"

    def ready(self) -> None:
        from deployments import report_sections  # noqa: F401  (registers its section)
        from deployments.selectors import provenance_downstream
        from models_catalog.selectors import register_downstream

        register_downstream(provenance_downstream)
