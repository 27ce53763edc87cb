from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Usage and billing"

    def ready(self) -> None:
        from billing import report_sections  # noqa: F401  (registers its compliance report section)
