from django.apps import AppConfig


class ModelsCatalogConfig(AppConfig):
    name = "models_catalog"
    verbose_name = "Model catalog"

    def ready(self) -> None:
        from models_catalog import report_sections  # noqa: F401  (registers its report section)
