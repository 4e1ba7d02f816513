"""The ledger as Django models, read-only: the tables are ours (created by our SQL migrations,
applied by this app's Django migration), so Django never manages them."""

from __future__ import annotations

from django.db import models


class Run(models.Model):
    """One retention run, dry run, purge or sweep (the table `retention_runs`)."""

    id = models.BigAutoField(primary_key=True)
    kind = models.TextField()
    trigger = models.TextField()
    dry_run = models.BooleanField()
    status = models.TextField()
    started_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True)
    stage = models.TextField(null=True)
    progress = models.FloatField(null=True)
    settings = models.JSONField()
    summary = models.JSONField()
    error = models.TextField(null=True)
    host = models.TextField(null=True)
    pid = models.IntegerField(null=True)
    backend_pid = models.IntegerField(null=True)
    backend_start = models.DateTimeField(null=True)

    class Meta:
        managed = False
        db_table = "retention_runs"
        ordering = ("-started_at",)
        verbose_name = "retention run"
        verbose_name_plural = "retention runs"
        permissions = (("run_retention", "Can run retention (preview or run now)"),)

    def __str__(self) -> str:
        return f"run #{self.id} ({self.kind}, {self.status})"
