"""The block-based world (one persisted Prefect block per operation). Read by the migration commands only."""

from __future__ import annotations

from django.db import models

from ddpui.models.org import Org, OrgUser


class OrgPrefectBlock(models.Model):
    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="legacy_blocks")
    block_type = models.CharField(max_length=50)
    block_id = models.CharField(max_length=64, unique=True)
    block_name = models.CharField(max_length=200, unique=True)
    display_name = models.CharField(max_length=200, null=True, blank=True)
    command = models.CharField(max_length=100, null=True, blank=True)
    dbt_target_schema = models.CharField(max_length=100, null=True, blank=True)
    seq = models.IntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.org.slug}: {self.block_type} {self.block_name}"


class OrgDataFlow(models.Model):
    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="legacy_dataflows")
    name = models.CharField(max_length=100)
    deployment_name = models.CharField(max_length=200)
    deployment_id = models.CharField(max_length=64, unique=True)
    cron = models.CharField(max_length=100, null=True, blank=True)
    connection_id = models.CharField(max_length=64, null=True, blank=True)
    dataflow_type = models.CharField(max_length=16, default="orchestrate")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.org.slug}: {self.name}"


class DataflowBlock(models.Model):
    dataflow = models.ForeignKey(OrgDataFlow, on_delete=models.CASCADE, related_name="dataflow_blocks")
    opb = models.ForeignKey(OrgPrefectBlock, on_delete=models.CASCADE, related_name="dataflow_blocks")

    def __str__(self) -> str:
        return f"{self.dataflow.name}: {self.opb.block_name}"


class BlockLock(models.Model):
    opb = models.OneToOneField(OrgPrefectBlock, on_delete=models.CASCADE, related_name="lock")
    locked_at = models.DateTimeField(auto_now_add=True)
    locked_by = models.ForeignKey(OrgUser, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    flow_run_id = models.CharField(max_length=64, null=True, blank=True)

    def __str__(self) -> str:
        return f"lock on {self.opb.block_name}"
