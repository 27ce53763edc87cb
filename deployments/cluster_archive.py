"""Deleted clusters, kept as rows so the deployments that ran on them keep their history.

A separate table rather than a field on `Cluster`: the archive mark is the only thing the
deletion adds, and this keeps `deployments/models.py` (and its migrations) out of the
change. `DeploymentsConfig.ready()` imports this module so the model is registered.
"""

from django.db import models

from deployments.models import Cluster


class ClusterArchive(models.Model):
    cluster = models.OneToOneField(Cluster, on_delete=models.PROTECT, primary_key=True,
                                   related_name="archive")
    archived_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "deployments"

    def __str__(self) -> str:
        return f"{self.cluster.name} (deleted {self.archived_at:%Y-%m-%d})"
