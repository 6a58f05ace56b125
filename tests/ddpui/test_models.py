"""Database-enforced invariants of the data model, and the master task list installed by migrate."""

import uuid

import pytest
from django.db import IntegrityError, connection, transaction

from ddpui.models import (
    DataflowOrgTask,
    Org,
    OrgDataFlowv1,
    OrgPrefectBlockv1,
    OrgTask,
    OrgWarehouse,
    Task,
    TaskLock,
)
from tests.factories import make_dataflow, make_org, make_orgtask

pytestmark = pytest.mark.django_db


def raw_insert(table: str, values: dict) -> None:
    """Bypasses the ORM entirely, so only the database can refuse the row."""
    columns = ", ".join(values)
    placeholders = ", ".join(["%s"] * len(values))
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} ({columns}) VALUES ({placeholders})", list(values.values()))


def test_master_task_list_is_installed_by_migrate():
    tasks = {t.slug: t for t in Task.objects.all()}
    assert set(tasks) == {
        "git-pull",
        "dbt-clean",
        "dbt-deps",
        "dbt-run",
        "dbt-test",
        "dbt-docs-generate",
        "dbt-seed",
        "airbyte-sync",
        "airbyte-reset",
    }
    assert tasks["git-pull"].type == "git" and tasks["git-pull"].command == "pull"
    assert tasks["dbt-docs-generate"].command == "docs generate"
    assert tasks["airbyte-sync"].type == "airbyte"
    assert tasks["dbt-seed"].is_system is False and tasks["dbt-run"].is_system is True


def test_second_tasklock_for_same_orgtask_is_refused_by_the_database():
    org = make_org()
    orgtask = make_orgtask(org)
    raw_insert("ddpui_locktask", {"orgtask_id": orgtask.id, "flow_run_id": "run-1", "locked_at": "2026-01-01 00:00:00"})
    with pytest.raises(IntegrityError), transaction.atomic():
        raw_insert(
            "ddpui_locktask", {"orgtask_id": orgtask.id, "flow_run_id": "run-2", "locked_at": "2026-01-01 00:00:00"}
        )
    assert TaskLock.objects.filter(orgtask=orgtask).count() == 1


def test_one_warehouse_per_org():
    org = make_org()
    OrgWarehouse.objects.create(org=org, wtype="duckdb", credentials_block_name="a")
    with pytest.raises(IntegrityError), transaction.atomic():
        raw_insert(
            "ddpui_orgwarehouse",
            {
                "org_id": org.id,
                "wtype": "postgres",
                "name": "",
                "credentials_block_name": "b",
                "created_at": "2026-01-01",
                "updated_at": "2026-01-01",
            },
        )


def test_dataflow_deployment_id_is_unique():
    org = make_org()
    make_dataflow(org, deployment_id="dep-1")
    with pytest.raises(IntegrityError), transaction.atomic():
        OrgDataFlowv1.objects.create(org=org, name="other", deployment_id="dep-1", deployment_name="x")


def test_orgtask_uuid_has_a_default_and_is_unique():
    org = make_org()
    first, second = make_orgtask(org), make_orgtask(org)
    assert isinstance(first.uuid, uuid.UUID) and first.uuid != second.uuid
    with pytest.raises(IntegrityError), transaction.atomic():
        OrgTask.objects.filter(pk=second.pk).update(uuid=first.uuid)


def test_dataflow_seq_is_unique_per_dataflow():
    org = make_org()
    a, b = make_orgtask(org, "dbt-run"), make_orgtask(org, "dbt-test")
    dataflow = make_dataflow(org, orgtasks=[a])
    with pytest.raises(IntegrityError), transaction.atomic():
        DataflowOrgTask.objects.create(dataflow=dataflow, orgtask=b, seq=0)
    other = make_dataflow(org)
    DataflowOrgTask.objects.create(dataflow=other, orgtask=b, seq=0)  # same seq, other dataflow: fine


def test_task_slug_is_unique():
    with pytest.raises(IntegrityError), transaction.atomic():
        Task.objects.create(slug="dbt-run", type="dbt", label="again", command="run")


def test_org_slug_unique_and_name_unique_case_insensitively():
    Org.objects.create(name="Acme", slug="acme")
    with pytest.raises(IntegrityError), transaction.atomic():
        Org.objects.create(name="Other", slug="acme")
    with pytest.raises(IntegrityError), transaction.atomic():
        Org.objects.create(name="ACME", slug="acme-2")


def test_prefect_block_name_is_unique():
    org = make_org()
    OrgPrefectBlockv1.objects.create(org=org, block_type="Secret", block_id="1", block_name="acme-secret")
    with pytest.raises(IntegrityError), transaction.atomic():
        OrgPrefectBlockv1.objects.create(org=make_org(), block_type="Secret", block_id="2", block_name="acme-secret")


def test_dbt_orgtask_command_includes_flags_and_options():
    org = make_org()
    task = make_orgtask(org, "dbt-run", parameters={"flags": ["full-refresh"], "options": {"select": "orders"}})
    assert task.command_text() == "dbt run --full-refresh --select orders"
    assert make_orgtask(org, "git-pull").command_text() == "git pull"
