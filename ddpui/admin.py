"""The operator's console: every model, with list columns, filters, search; legacy models read-only."""

from __future__ import annotations

from collections import Counter

from django.contrib import admin, messages
from django.utils.html import format_html, format_html_join

from ddpui.errors import DomainError
from ddpui.models import (
    AuditEvent,
    BlockLock,
    DataflowBlock,
    DataflowOrgTask,
    DbtTarget,
    Org,
    OrgDataFlow,
    OrgDataFlowv1,
    OrgDbt,
    OrgPrefectBlock,
    OrgPrefectBlockv1,
    OrgTask,
    OrgUser,
    OrgWarehouse,
    PrefectFlowRun,
    Task,
    TaskLock,
    TaskProgress,
)
from ddpui.services import locks, pipelines, run_control


class OrgUserInline(admin.TabularInline):
    model = OrgUser
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Org)
class OrgAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "airbyte_workspace_id", "created_at"]
    search_fields = ["name", "slug", "airbyte_workspace_id"]
    readonly_fields = ["created_at", "updated_at"]
    inlines = [OrgUserInline]


@admin.register(OrgUser)
class OrgUserAdmin(admin.ModelAdmin):
    list_display = ["user", "org", "role", "created_at"]
    list_filter = ["role", "org"]
    search_fields = ["user__email", "user__username", "org__name", "org__slug"]
    list_select_related = ["user", "org"]
    autocomplete_fields = ["user", "org"]


@admin.register(OrgWarehouse)
class OrgWarehouseAdmin(admin.ModelAdmin):
    list_display = ["org", "name", "wtype", "credentials_block_name", "airbyte_destination_id", "created_at"]
    list_filter = ["wtype"]
    search_fields = ["org__name", "org__slug", "name", "airbyte_destination_id"]
    list_select_related = ["org"]


class DbtTargetInline(admin.TabularInline):
    """A target added here has no dbt profile block yet: POST /api/prefect/tasks/transform/ makes it."""

    model = DbtTarget
    extra = 0
    fields = ["name", "schema", "warehouse", "profile_block", "is_default"]
    readonly_fields = ["profile_block"]


@admin.register(OrgDbt)
class OrgDbtAdmin(admin.ModelAdmin):
    list_display = ["org", "gitrepo_url", "gitrepo_branch", "project_dir"]
    search_fields = ["org__name", "org__slug", "gitrepo_url"]
    list_select_related = ["org"]
    inlines = [DbtTargetInline]


@admin.register(DbtTarget)
class DbtTargetAdmin(admin.ModelAdmin):
    list_display = ["name", "org", "schema", "warehouse", "profile_block", "is_default", "updated_at"]
    list_filter = ["is_default", "dbt__org"]
    search_fields = ["name", "schema", "dbt__org__slug", "warehouse__name"]
    list_select_related = ["dbt__org", "warehouse", "profile_block"]
    readonly_fields = ["profile_block", "created_at", "updated_at"]

    @admin.display(description="org")
    def org(self, obj: DbtTarget) -> str:
        return obj.dbt.org.slug


@admin.register(OrgPrefectBlockv1)
class OrgPrefectBlockv1Admin(admin.ModelAdmin):
    list_display = ["block_name", "block_type", "org", "block_id", "updated_at"]
    list_filter = ["block_type"]
    search_fields = ["block_name", "block_id", "org__slug"]
    list_select_related = ["org"]


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = ["slug", "type", "label", "command", "is_system"]
    list_filter = ["type", "is_system"]
    search_fields = ["slug", "label", "command"]


@admin.register(OrgTask)
class OrgTaskAdmin(admin.ModelAdmin):
    list_display = ["uuid", "org", "task", "command", "connection_id", "generated_by", "created_at"]
    list_filter = ["task__type", "generated_by", "org"]
    search_fields = ["uuid", "org__slug", "task__slug", "connection_id"]
    list_select_related = ["org", "task"]

    @admin.display(description="command")
    def command(self, obj: OrgTask) -> str:
        return obj.command_text()


class DataflowOrgTaskInline(admin.TabularInline):
    model = DataflowOrgTask
    extra = 0
    raw_id_fields = ["orgtask"]


@admin.register(OrgDataFlowv1)
class OrgDataFlowv1Admin(admin.ModelAdmin):
    list_display = [
        "name",
        "org",
        "dataflow_type",
        "target",
        "cron",
        "max_parallel_syncs",
        "deployment_name",
        "deployment_id",
        "updated_at",
    ]
    list_filter = ["dataflow_type", "org"]
    search_fields = ["name", "deployment_name", "deployment_id", "org__slug"]
    list_select_related = ["org", "target"]
    raw_id_fields = ["target"]
    inlines = [DataflowOrgTaskInline]
    actions = ["run_now"]

    @admin.action(description="Run now")
    def run_now(self, request, queryset):
        """Same service as the API trigger: locks taken atomically, 409-style refusal when locked."""
        orguser = OrgUser.objects.filter(user=request.user).first()
        for dataflow in queryset.select_related("org"):
            caller = orguser if orguser is not None and orguser.org_id == dataflow.org_id else None
            try:
                started = pipelines.pipeline_run(org=dataflow.org, orguser=caller, deployment_id=dataflow.deployment_id)
            except DomainError as exc:
                self.message_user(request, f"{dataflow.name}: not started: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, f"{dataflow.name}: started flow run {started.flow_run_id}", messages.SUCCESS)


@admin.register(DataflowOrgTask)
class DataflowOrgTaskAdmin(admin.ModelAdmin):
    list_display = ["dataflow", "seq", "orgtask"]
    list_filter = ["dataflow__org"]
    search_fields = ["dataflow__name", "orgtask__uuid"]
    list_select_related = ["dataflow", "orgtask__task", "orgtask__org"]


@admin.register(TaskLock)
class TaskLockAdmin(admin.ModelAdmin):
    list_display = ["orgtask", "target", "flow_run_id", "locking_dataflow", "locked_by", "locked_at"]
    list_filter = ["orgtask__org", "locked_at"]
    search_fields = ["flow_run_id", "orgtask__uuid", "locking_dataflow__name", "target__name"]
    list_select_related = ["orgtask__task", "orgtask__org", "target", "locking_dataflow", "locked_by__user"]
    actions = ["release_locks"]

    def has_add_permission(self, request) -> bool:
        # locks are taken by the lock service when runs start, never by hand
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description="Release the selected locks")
    def release_locks(self, request, queryset):
        released = locks.locks_release_by_ids(lock_ids=queryset.values_list("id", flat=True))
        self.message_user(request, f"released {released} lock(s)", messages.SUCCESS)


@admin.register(PrefectFlowRun)
class PrefectFlowRunAdmin(admin.ModelAdmin):
    """The run history: what Prefect reported (webhook, API reads, reconciler); read-only, since our record
    follows Prefect and an edit here would only be overwritten or, worse, believed."""

    list_display = [
        "name",
        "flow_run_id",
        "org",
        "target_name",
        "state_type",
        "state_name",
        "tasks",
        "start_time",
        "end_time",
    ]
    list_filter = ["state_type", "state_name", "org", "target_name"]
    search_fields = ["flow_run_id", "deployment_id", "name", "retry_of"]
    list_select_related = ["org"]
    date_hierarchy = "start_time"
    actions = ["cancel_runs", "retry_runs"]
    fields = [
        "name",
        "flow_run_id",
        "deployment_id",
        ("org", "target_name"),
        ("state_type", "state_name"),
        "state_message",
        ("retry_of", "cancelled_by"),
        ("expected_start_time", "start_time", "end_time"),
        "total_run_time",
        "task_results_table",
        "updated_at",
    ]
    readonly_fields = ["task_results_table", "updated_at"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def _run_control(self, request, queryset, verb: str, control) -> None:
        """Applies `control` (a run_control service) to each run, as the operator: the operator's membership
        of the run's org when there is one, else their e-mail as the actor."""
        actor = request.user.email or request.user.get_username()
        for record in queryset.select_related("org"):
            if record.org is None:
                self.message_user(request, f"{record.flow_run_id}: not {verb}: the run has no org", messages.ERROR)
                continue
            orguser = OrgUser.objects.filter(user=request.user, org=record.org).select_related("user").first()
            try:
                result = control(org=record.org, orguser=orguser, flow_run_id=record.flow_run_id, actor=actor)
            except DomainError as exc:
                self.message_user(request, f"{record.flow_run_id}: not {verb}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, f"{record.flow_run_id}: {verb} ({result})", messages.SUCCESS)

    @admin.action(description="Cancel the selected runs (stops their Airbyte jobs and commands)")
    def cancel_runs(self, request, queryset):
        def cancel(**kwargs) -> str:
            return run_control.run_cancel(**kwargs).state_name or "cancelling"

        self._run_control(request, queryset, "cancelled", cancel)

    @admin.action(description="Resume the selected failed runs from their failed task")
    def retry_runs(self, request, queryset):
        def retry(**kwargs) -> str:
            return f"new flow run {run_control.run_retry(**kwargs).flow_run_id}"

        self._run_control(request, queryset, "resumed", retry)

    @admin.display(description="tasks")
    def tasks(self, obj: PrefectFlowRun) -> str:
        counts = Counter(result.get("status", "?") for result in obj.task_results or [])
        return ", ".join(f"{count} {status}" for status, count in counts.items()) or "-"

    @admin.display(description="task results")
    def task_results_table(self, obj: PrefectFlowRun) -> str:
        results = sorted(obj.task_results or [], key=lambda result: result.get("seq", 0))
        if not results:
            return "no results yet (they arrive with the run's end)"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    result.get("seq", ""),
                    result.get("slug", ""),
                    result.get("status", ""),
                    "" if result.get("duration_seconds") is None else f"{result['duration_seconds']:.1f}s",
                    result.get("attempts", ""),
                    result.get("message", ""),
                )
                for result in results
            ),
        )
        return format_html(
            "<table><thead><tr><th>seq</th><th>task</th><th>status</th><th>duration</th><th>attempts</th>"
            "<th>message</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )


class ReadOnlyAdmin(admin.ModelAdmin):
    """Legacy rows are evidence for the migration: look, never touch."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(OrgPrefectBlock)
class OrgPrefectBlockAdmin(ReadOnlyAdmin):
    list_display = ["block_name", "block_type", "org", "command", "seq", "dbt_target_schema"]
    list_filter = ["block_type", "org"]
    search_fields = ["block_name", "block_id", "org__slug"]
    list_select_related = ["org"]


@admin.register(OrgDataFlow)
class OrgDataFlowAdmin(ReadOnlyAdmin):
    list_display = ["name", "org", "dataflow_type", "cron", "deployment_name", "deployment_id"]
    list_filter = ["dataflow_type", "org"]
    search_fields = ["name", "deployment_name", "deployment_id", "org__slug"]
    list_select_related = ["org"]


@admin.register(DataflowBlock)
class DataflowBlockAdmin(ReadOnlyAdmin):
    list_display = ["dataflow", "opb"]
    search_fields = ["dataflow__name", "opb__block_name"]
    list_select_related = ["dataflow", "opb"]


@admin.register(BlockLock)
class BlockLockAdmin(ReadOnlyAdmin):
    list_display = ["opb", "flow_run_id", "locked_by", "locked_at"]
    search_fields = ["opb__block_name", "flow_run_id"]
    list_select_related = ["opb", "locked_by__user"]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "org", "actor", "action", "object_type", "object_id"]
    list_filter = ["action", "object_type", "org"]
    search_fields = ["actor", "action", "object_id"]
    list_select_related = ["org"]
    date_hierarchy = "created_at"


@admin.register(TaskProgress)
class TaskProgressAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "org", "kind", "status", "task_id", "heartbeat_at", "finished_at"]
    list_filter = ["kind", "status", "org"]
    search_fields = ["task_id", "org__slug"]
    list_select_related = ["org"]


from ddpui import admin_alerts  # noqa: E402, F401  (registers the alert models)
