"""Our record of Prefect flow runs, kept up to date by the trigger, the webhook and the reconciler."""

from __future__ import annotations

from django.db import models

from ddpui.models.org import Org


class PrefectFlowRun(models.Model):
    flow_run_id = models.CharField(max_length=64, unique=True)
    deployment_id = models.CharField(max_length=64, null=True, blank=True, db_index=True)
    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="flow_runs", null=True, blank=True)
    name = models.CharField(max_length=200, blank=True, default="")
    # the dbt target the run's git and dbt tasks ran on ("" when it had none); a name, so history outlives the target
    target_name = models.CharField(max_length=32, blank=True, default="")
    state_type = models.CharField(max_length=32, blank=True, default="")
    state_name = models.CharField(max_length=64, blank=True, default="")
    state_message = models.TextField(blank=True, default="")
    expected_start_time = models.DateTimeField(null=True, blank=True)
    start_time = models.DateTimeField(null=True, blank=True)
    end_time = models.DateTimeField(null=True, blank=True)
    total_run_time = models.FloatField(default=0)
    task_results = models.JSONField(default=list, blank=True)
    # the failed run this one resumes (a retry from the failed task), by flow run id
    retry_of = models.CharField(max_length=64, null=True, blank=True, db_index=True)
    # who cancelled the run through ddpui (the API or the admin); empty otherwise
    cancelled_by = models.CharField(max_length=254, blank=True, default="")
    # the run's alert events already raised (services/alerts/raising.py): each once, whoever saw it first
    notified_events = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["deployment_id", "-start_time"])]
        ordering = ["-start_time", "-id"]

    def __str__(self) -> str:
        return f"{self.name or self.flow_run_id} [{self.state_name or self.state_type}]"
