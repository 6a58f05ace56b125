"""Two first reports of one run at once (services/run_states.py): one row, and the later state is kept."""

import threading
import uuid

import pytest
from django.db import connection, connections

from ddpui.models import PrefectFlowRun
from ddpui.services import run_states
from tests.factories import make_org

# transaction=True: the rival report runs in a thread, on its own connection; serialized_rollback=True, as every
# transactional test here: the flush at its end would otherwise leave the next ones without their base rows
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def report(flow_run_id: str, deployment_id: str, state: str) -> dict:
    return {
        "flow_run_id": flow_run_id,
        "deployment_id": deployment_id,
        "state_type": state,
        "state_name": state.title(),
    }


def test_a_first_report_that_loses_the_insert_race_is_applied_to_the_winners_row(monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite's IMMEDIATE transactions let one writer in at a time: there is no race to lose")
    org = make_org()
    flow_run_id, deployment_id = str(uuid.uuid4()), str(uuid.uuid4())
    found_target = run_states._dataflow_target_name
    rival: dict = {}

    def rival_report() -> None:
        try:
            rival["record"], _ = run_states.run_state_apply(org=org, run=report(flow_run_id, deployment_id, "RUNNING"))
        finally:
            connections.close_all()

    def target_name(deployment: str) -> str:
        # called once the first report has found no row and before it inserts one: the rival inserts it first
        if not rival:
            rival["started"] = True
            thread = threading.Thread(target=rival_report)
            thread.start()
            thread.join(timeout=30)
        return found_target(deployment)

    monkeypatch.setattr(run_states, "_dataflow_target_name", target_name)
    record, changed = run_states.run_state_apply(org=org, run=report(flow_run_id, deployment_id, "SCHEDULED"))

    assert rival["record"].state_type == "RUNNING"
    assert list(PrefectFlowRun.objects.filter(flow_run_id=flow_run_id).values_list("pk", "state_type")) == [
        (rival["record"].pk, "RUNNING")
    ]
    assert (record.pk, record.state_type, changed) == (rival["record"].pk, "RUNNING", False)
