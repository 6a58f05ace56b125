"""The lock service: all-or-none acquisition, release by run, status, and the admin release action."""

import pytest
from django.contrib.admin.sites import site
from django.test import Client

from ddpui.models import TaskLock
from ddpui.services import locks
from tests.factories import make_dataflow, make_org, make_orgtask, make_orguser

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
