from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "gateway"
    verbose_name = "OpenAI-compatible gateway"

    def ready(self) -> None:
        from gateway import report_sections  # noqa: F401  (registers its compliance report section)
