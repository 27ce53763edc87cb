from __future__ import annotations

from django.db import models


class DemoPhase(models.TextChoices):
    """The demo model's preparation step, set by `manage.py demo_model` as it goes; failed
    and stopped end it, and the pages show `DEMO_STEPS` in order."""

    WAITING = "waiting", "Waiting to start"
    ENGINE = "engine", "Building the inference engine"
    MODEL = "model", "Unpacking the model"
    PACKING = "packing", "Packing the ModelCar"
    UPLOADING = "uploading", "Uploading"
    SCANNING = "scanning", "Scanning"
    APPROVAL = "approval", "Awaiting approval"
    PUBLISHED = "published", "Approved, signed and published"
    STARTING = "starting", "Starting the model server"
    READY = "ready", "Ready"
    FAILED = "failed", "Not available"
    STOPPED = "stopped", "Stopped"


# The order the steps are shown in (failed and stopped are outcomes, not steps).
# The engine builds in the background from the start; it is a step of its own only when the
# published model has to wait for it.
DEMO_STEPS = [DemoPhase.MODEL, DemoPhase.PACKING, DemoPhase.UPLOADING, DemoPhase.SCANNING,
              DemoPhase.APPROVAL, DemoPhase.PUBLISHED, DemoPhase.ENGINE, DemoPhase.STARTING,
              DemoPhase.READY]


class DemoModelState(models.Model):
    """Where the demo model's preparation stands: one row, written by `manage.py demo_model`
    (started by `make run`) and shown on the catalog and playground pages in DEBUG only. The
    real steps (upload, scan, approval, deployment) are recorded by the services they use."""

    name = models.CharField(max_length=50, unique=True, default="demo-model")
    phase = models.CharField(max_length=16, choices=DemoPhase.choices,
                             default=DemoPhase.WAITING)
    message = models.TextField(blank=True)
    problem = models.TextField(blank=True, help_text="What is missing and what to do instead")
    model_slug = models.CharField(max_length=100, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name}: {self.phase}"

    @property
    def step_index(self) -> int:
        return DEMO_STEPS.index(self.phase) if self.phase in DEMO_STEPS else -1
