from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Usage and billing"

    def ready(self) -> None:
        from billing import report_sections  # noqa: F401  (registers its compliance report section)
        from billing.notifications.deprecations import deprecation_announced
        from models_catalog.services.lifecycle import on_deprecation

        # The catalog announces a deprecation after commit; billing knows who used the model.
        on_deprecation(deprecation_announced)
