"""Every existing dbt workspace becomes a workspace with one default target named `default` (the name of the target
ddpui's profiles were written with), holding the workspace's schema, the org's (first) warehouse and the
workspace's dbt CLI profile block; the org's pipelines and manual dataflows that run git or dbt tasks run on it,
and the locks of running git and dbt tasks are its locks (issue 19). Reversible: back to the default target's
values, and one lock per task.
"""

from django.db import migrations

TRANSFORM_KINDS = ["git", "dbt"]
DEFAULT_TARGET = "default"


def workspaces_to_targets(apps, schema_editor):
    OrgDbt = apps.get_model("ddpui", "OrgDbt")
    DbtTarget = apps.get_model("ddpui", "DbtTarget")
    OrgWarehouse = apps.get_model("ddpui", "OrgWarehouse")
    OrgDataFlowv1 = apps.get_model("ddpui", "OrgDataFlowv1")
    TaskLock = apps.get_model("ddpui", "TaskLock")
    for dbt in OrgDbt.objects.all():
        warehouse = OrgWarehouse.objects.filter(org_id=dbt.org_id).order_by("id").first()
        target = DbtTarget.objects.create(
            dbt=dbt,
            name=DEFAULT_TARGET,
            schema=dbt.default_schema or "",
            warehouse=warehouse,
            profile_block_id=dbt.cli_profile_block_id,
            is_default=True,
        )
        dataflow_ids = set(
            OrgDataFlowv1.objects.filter(
                org_id=dbt.org_id, dataflow_orgtasks__orgtask__task__type__in=TRANSFORM_KINDS
            ).values_list("id", flat=True)
        )
        OrgDataFlowv1.objects.filter(id__in=dataflow_ids).update(target=target)
        TaskLock.objects.filter(
            orgtask__org_id=dbt.org_id, orgtask__task__type__in=TRANSFORM_KINDS, target__isnull=True
        ).update(target=target)


def targets_to_workspaces(apps, schema_editor):
    """Back to one schema and profile per workspace: the default target's; the other targets' locks go (a task
    can hold one lock again)."""
    OrgDbt = apps.get_model("ddpui", "OrgDbt")
    DbtTarget = apps.get_model("ddpui", "DbtTarget")
    TaskLock = apps.get_model("ddpui", "TaskLock")
    for target in DbtTarget.objects.filter(is_default=True).select_related("warehouse"):
        OrgDbt.objects.filter(id=target.dbt_id).update(
            default_schema=target.schema or None,
            target_type=target.warehouse.wtype if target.warehouse else None,
            cli_profile_block_id=target.profile_block_id,
        )
    TaskLock.objects.filter(target__is_default=False).delete()


class Migration(migrations.Migration):

    dependencies = [
        ('ddpui', '0009_dbt_targets'),
    ]

    operations = [
        migrations.RunPython(workspaces_to_targets, targets_to_workspaces),
    ]
