from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The first-run demo model (DEBUG only): prepared through the catalog's front door and
    served by a local llama.cpp server that `make run` starts."""

    name = "portal.demo"
    label = "demo"
    default_auto_field = "django.db.models.BigAutoField"
