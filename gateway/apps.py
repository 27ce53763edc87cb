from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "gateway"
    verbose_name = "OpenAI-compatible gateway"

    def ready(self) -> None:
        from billing.usage import drain
        from gateway import report_sections  # noqa: F401  (registers its compliance report section)
        from gateway.services import apikeys_mark_used

        drain.after_store(apikeys_mark_used)
