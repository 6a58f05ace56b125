"""The lock service: all-or-none acquisition, release by run, status, and the admin release action."""

import pytest
from django.contrib.admin.sites import site
from django.test import Client

from ddpui.models import DbtTarget, TaskLock
from ddpui.services import locks
from tests.factories import make_dataflow, make_dbt_workspace, make_org, make_orgtask, make_orguser

pytestmark = pytest.mark.django_db


def test_acquire_is_all_or_none_and_names_the_holder():
    org = make_org()
    shared, own = make_orgtask(org, "dbt-run"), make_orgtask(org, "dbt-test")
    first = make_dataflow(org, "nightly", [shared])
    locks.locks_acquire(orgtasks=[shared], flow_run_id="run-1", dataflow=first)
    with pytest.raises(locks.TaskLocked) as caught:
        locks.locks_acquire(orgtasks=[own, shared], flow_run_id="run-2")
    assert "run run-1 of pipeline 'nightly'" in caught.value.message
    assert "dbt-run" in caught.value.message
    # nothing of the failed attempt stays behind
    assert not TaskLock.objects.filter(orgtask=own).exists()
    assert locks.locks_status(orgtask_ids=[shared.id, own.id]).keys() == {shared.id}


def test_the_same_task_on_the_same_target_is_exclusive_on_different_targets_not():
    org = make_org()
    dbt, default = make_dbt_workspace(org)
    dev = DbtTarget.objects.create(dbt=dbt, name="dev", schema="dev", warehouse=default.warehouse)
    run, sync = make_orgtask(org, "dbt-run"), make_orgtask(org, "airbyte-sync")
    locks.locks_acquire(orgtasks=[run], target=default, flow_run_id="prod-1")
    assert locks.locks_acquire(orgtasks=[run], target=dev, flow_run_id="dev-1")  # another target: not exclusive
    for target in (default, dev, None):  # None: the default target
        with pytest.raises(locks.TaskLocked) as caught:
            locks.locks_acquire(orgtasks=[run], target=target, flow_run_id="again")
        assert f"on target {(target or default).name} is locked by run" in caught.value.message
    # a sync has no target: locked alone, whichever target the run is on
    locks.locks_acquire(orgtasks=[sync], target=dev, flow_run_id="dev-2")
    with pytest.raises(locks.TaskLocked):
        locks.locks_acquire(orgtasks=[sync], target=default, flow_run_id="prod-2")
    assert set(TaskLock.objects.values_list("orgtask_id", "target_id", "flow_run_id")) == {
        (run.id, default.id, "prod-1"),
        (run.id, dev.id, "dev-1"),
        (sync.id, None, "dev-2"),
    }


def test_release_for_run_frees_only_that_runs_locks():
    org = make_org()
    a, b = make_orgtask(org, "dbt-run"), make_orgtask(org, "dbt-test")
    locks.locks_acquire(orgtasks=[a], flow_run_id="run-a")
    taken = locks.locks_acquire(orgtasks=[b])
    locks.locks_attach_run(locks=taken, flow_run_id="run-b")
    assert locks.locks_release_for_run(flow_run_id="run-a") == 1
    assert list(TaskLock.objects.values_list("flow_run_id", flat=True)) == ["run-b"]
    assert locks.locks_acquire(orgtasks=[a], flow_run_id="run-c")


def test_admin_release_action_frees_selected_locks():
    admin_user = make_orguser().user
    admin_user.is_staff = admin_user.is_superuser = True
    admin_user.save()
    org = make_org()
    a, b = make_orgtask(org, "dbt-run"), make_orgtask(org, "dbt-test")
    held = locks.locks_acquire(orgtasks=[a, b], flow_run_id="run-x")
    client = Client()
    client.force_login(admin_user)
    response = client.post(
        "/admin/ddpui/tasklock/",
        {"action": "release_locks", "index": 0, "_selected_action": [held[0].id]},
        follow=True,
    )
    assert response.status_code == 200
    assert "Released 1 lock(s)" in response.content.decode()
    assert list(TaskLock.objects.values_list("orgtask_id", flat=True)) == [b.id]


def test_every_model_is_in_the_admin():
    from django.apps import apps

    missing = [m.__name__ for m in apps.get_app_config("ddpui").get_models() if m not in site._registry]
    assert missing == []


def test_admin_changelists_render(admin_client):
    org = make_org()
    make_dataflow(org, orgtasks=[make_orgtask(org)])
    for model in [
        "org",
        "orguser",
        "orgwarehouse",
        "orgdbt",
        "orgprefectblockv1",
        "task",
        "orgtask",
        "orgdataflowv1",
        "datafloworgtask",
        "tasklock",
        "prefectflowrun",
        "orgprefectblock",
        "orgdataflow",
        "dataflowblock",
        "blocklock",
    ]:
        response = admin_client.get(f"/admin/ddpui/{model}/")
        assert response.status_code == 200, model


def test_legacy_models_are_read_only_in_admin(admin_client):
    assert admin_client.get("/admin/ddpui/orgprefectblock/add/").status_code == 403
