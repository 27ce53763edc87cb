from __future__ import annotations

from django.conf import settings

from demo.models import DemoModelState


def demo_state() -> DemoModelState | None:
    """The demo model's preparation, in DEBUG only (None in production, whatever the table
    holds)."""
    if not settings.DEBUG:
        return None
    return DemoModelState.objects.filter(name="demo-model").first()
