"""Dataflows (one Prefect deployment each) and their ordered org tasks."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from ddpcontract.tasks import DEFAULT_MAX_PARALLEL_SYNCS, MAX_PARALLEL_SYNCS_LIMIT
from ddpui.models.org import DbtTarget, Org
from ddpui.models.tasks import OrgTask


class OrgDataFlowv1(models.Model):
    class DataflowType(models.TextChoices):
        ORCHESTRATE = "orchestrate", "orchestrate"
        MANUAL = "manual", "manual"

    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="dataflows")
    name = models.CharField(max_length=100)
    deployment_id = models.CharField(max_length=64, unique=True)
    deployment_name = models.CharField(max_length=200)
    cron = models.CharField(max_length=100, null=True, blank=True)
    timezone = models.CharField(max_length=64, null=True, blank=True)
    dataflow_type = models.CharField(max_length=16, choices=DataflowType.choices, default=DataflowType.ORCHESTRATE)
    # the pipeline's Airbyte syncs run side by side, at most this many at once (1: every task in turn)
    max_parallel_syncs = models.PositiveSmallIntegerField(
        default=DEFAULT_MAX_PARALLEL_SYNCS,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_PARALLEL_SYNCS_LIMIT)],
    )
    # the dbt target its git and dbt tasks run on (null: it has none); RESTRICT: a target a pipeline uses stays
    target = models.ForeignKey(DbtTarget, on_delete=models.RESTRICT, null=True, blank=True, related_name="dataflows")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.org.slug}: {self.name}"


class DataflowOrgTask(models.Model):
    dataflow = models.ForeignKey(OrgDataFlowv1, on_delete=models.CASCADE, related_name="dataflow_orgtasks")
    orgtask = models.ForeignKey(OrgTask, on_delete=models.CASCADE, related_name="dataflow_orgtasks")
    seq = models.PositiveIntegerField(default=0)

    class Meta:
        db_table = "ddpui_dataflowtask"
        constraints = [models.UniqueConstraint(fields=["dataflow", "seq"], name="unique_dataflow_seq")]
        ordering = ["dataflow_id", "seq"]

    def __str__(self) -> str:
        return f"{self.dataflow.name}[{self.seq}] {self.orgtask_id}"
