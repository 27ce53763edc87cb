from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Usage and billing"

    def ready(self) -> None:
        from billing import report_sections  # noqa: F401  (registers its compliance report section)
        from models_catalog.services.lifecycle import on_deprecation

        # The catalog announces a deprecation after commit; billing knows who used the model.
        on_deprecation(_enqueue_deprecation_notices)


def _enqueue_deprecation_notices(*, model_id: int, version_id: int | None) -> None:
    from billing.notifications.tasks import deprecation_notify

    deprecation_notify.delay(model_id, version_id)
