"""List pages cost the same number of SQL queries, proxy calls and Airbyte calls for 1 item or 50."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext

from ddpui.airbyte.client import get_airbyte
from ddpui.models import OrgWarehouse
from ddpui.prefect_client import get_proxy
from ddpui.services import locks
from tests.ddpui.api.helpers import add_source, add_warehouse
from tests.factories import make_dataflow, make_orgtask

pytestmark = [pytest.mark.django_db, pytest.mark.prefect]


def measure(api, path: str, headers: dict) -> tuple[int, int, int, list]:
    proxy, airbyte = get_proxy(), get_airbyte()
    proxy_before, airbyte_before = proxy.calls, airbyte.calls
    with CaptureQueriesContext(db_connection) as queries:
        response = api.get(path, headers=headers)
    assert response.status_code == 200, response.content
    return len(queries), proxy.calls - proxy_before, airbyte.calls - airbyte_before, response.json()


def add_connections(org, source_id: str, count: int, orguser) -> None:
    """Connections made straight in Airbyte, with their sync task and a manual dataflow whose deployment
    id Prefect does not know (the list still asks the proxy for their last runs, in one call)."""
    destination_id = OrgWarehouse.objects.get(org=org).airbyte_destination_id
    for _ in range(count):
        created = get_airbyte().connection_create(
            body={"sourceId": source_id, "destinationId": destination_id, "name": f"c-{uuid.uuid4().hex[:6]}"}
        )
        orgtask = make_orgtask(org, "airbyte-sync", connection_id=created["connectionId"])
        dataflow = make_dataflow(
            org, name=created["name"], orgtasks=[orgtask], dataflow_type="manual", deployment_id=str(uuid.uuid4())
        )
        locks.locks_acquire(orgtasks=[orgtask], locked_by=orguser, dataflow=dataflow, flow_run_id=str(uuid.uuid4()))


def test_connection_list_cost_is_constant(api, new_org, tmp_path):
    org = new_org()
    add_warehouse(api, org, tmp_path)
    source_id = add_source(api, org)
    orguser = org.org.orgusers.get()
    add_connections(org.org, source_id, 1, orguser)
    one = measure(api, "/api/airbyte/v1/connections", org.headers)
    add_connections(org.org, source_id, 49, orguser)
    fifty = measure(api, "/api/airbyte/v1/connections", org.headers)

    assert (len(one[3]), len(fifty[3])) == (1, 50)
    assert fifty[:3] == one[:3]
    queries, proxy_calls, airbyte_calls = one[:3]
    # Airbyte: one web_backend/connections/list (names and latest sync job of every connection);
    # proxy: the manual deployments' last runs, asked only because connections are locked
    assert queries <= 10 and proxy_calls == 1 and airbyte_calls == 1
    item = fifty[3][0]
    assert item["lastRun"] is None and item["source"]["sourceId"] == source_id
    assert (item["source"]["sourceName"], item["destination"]["destinationName"]) == ("Sample Data", "DuckDB")
    assert item["lock"]["lockedBy"] == org.user.email and item["lock"]["status"] == "locked"


def test_transform_task_list_cost_is_constant(api, new_org):
    org = new_org()
    orguser = org.org.orgusers.get()
    first = make_orgtask(org.org, "dbt-run", generated_by="client", parameters={"options": {"select": "m0"}})
    locks.locks_acquire(orgtasks=[first], locked_by=orguser, flow_run_id=str(uuid.uuid4()))
    one = measure(api, "/api/prefect/tasks/transform/", org.headers)
    for n in range(1, 50):
        task = make_orgtask(org.org, "dbt-run", generated_by="client", parameters={"options": {"select": f"m{n}"}})
        locks.locks_acquire(orgtasks=[task], locked_by=orguser, flow_run_id=str(uuid.uuid4()))
    fifty = measure(api, "/api/prefect/tasks/transform/", org.headers)

    assert (len(one[3]), len(fifty[3])) == (1, 50)
    assert fifty[:3] == one[:3]
    assert one[0] <= 10 and one[1:3] == (0, 0)
    assert [t["command"] for t in fifty[3][:2]] == ["dbt run --select m0", "dbt run --select m1"]
    assert all(t["lock"]["lockedBy"] == org.user.email for t in fifty[3])
