"""The hot reads (proxy/hot_reads.py) answer exactly as their FastAPI routes do, and only the requests they are
sure about: each request is sent to three apps on the session's Prefect server — the proxy as served, one
without the hot reads, and a probe whose FastAPI routes all fail (their Prefect client dependency raises). A
request answered by the hot reads gets the same bytes from all three; any other gets the routes' answer from
the first two and, from the third, the probe's failure (or FastAPI's 401, given before any route runs)."""

from __future__ import annotations

import contextlib
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from prefect.client.schemas.actions import ArtifactCreate
from prefect.states import Completed

from proxy import dependencies, hot_reads
from proxy.main import create_app
from tests.proxy.conftest import AUTH, TOKEN, make_deployment, proxy_settings
from tests.support.prefect_rest import prefect_request

pytestmark = pytest.mark.prefect

UNKNOWN = "00000000-0000-0000-0000-0000000000ab"


@pytest.fixture(scope="module")
def apps(prefect_server, work_pools):
    async def no_routes():
        raise RuntimeError("a FastAPI route answered")

    served, plain, probe = (
        create_app(proxy_settings()),
        create_app(proxy_settings(), hot_reads=False),
        create_app(proxy_settings()),
    )
    probe.dependency_overrides[dependencies.prefect_client] = no_routes
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(TestClient(app, raise_server_exceptions=False)) for app in (served, plain, probe)]


@pytest.fixture(scope="module")
def objects(apps, prefect):
    """A deployment, and a finished run of it with three log lines and its task-results table."""
    served = apps[0]
    served.headers.update(AUTH)
    deployment_id = make_deployment(served)
    del served.headers["Authorization"]
    run = prefect.create_flow_run_from_deployment(deployment_id)
    flow_run_id = str(run.id)
    start = datetime.now(UTC)
    logs = [
        {"name": "t", "level": 20, "message": f"line {i}", "timestamp": (start + timedelta(seconds=i)).isoformat()}
        for i in range(3)
    ]
    prefect_request("POST", "/logs/", json=[{**line, "flow_run_id": flow_run_id} for line in logs])
    prefect.set_flow_run_state(flow_run_id, Completed(), force=True)
    rows = [{"seq": 0, "slug": "shell", "status": "success"}]
    prefect.create_artifact(
        artifact=ArtifactCreate(key="task-results", type="table", data=json.dumps(rows), flow_run_id=flow_run_id)
    )
    return {"deployment": deployment_id, "run": flow_run_id}


def _answers(apps, path: str, headers: dict[str, str]) -> list[tuple[int, str, bytes]]:
    answers = []
    for client in apps:
        response = client.get(path, headers=headers)
        answers.append((response.status_code, response.headers.get("content-type"), response.content))
    return answers


HOT = [
    "/proxy/deployments/{deployment}",
    "/proxy/deployments/" + UNKNOWN,  # 404 from the app's own handler
    "/proxy/flow_runs/{run}",
    "/proxy/flow_runs/{RUN}",  # upper-case hex
    "/proxy/flow_runs/{run}?include_task_results=true",
    "/proxy/flow_runs/{run}?include_task_results=0",
    "/proxy/flow_runs/" + UNKNOWN + "?include_task_results=1",
    "/proxy/flow_runs/logs/{run}",
    "/proxy/flow_runs/logs/{run}?offset=1",
    "/proxy/flow_runs/logs/{run}?offset=1&limit=1",
    "/proxy/flow_runs/logs/{run}?limit=200&offset=0",
    "/proxy/flow_runs/logs/" + UNKNOWN,
]


@pytest.mark.parametrize("path", HOT)
def test_the_hot_reads_answer_as_their_routes_without_them(apps, objects, path):
    path = path.format(**objects, RUN=objects["run"].upper())
    served, plain, probe = _answers(apps, path, AUTH)
    assert served == plain, path
    assert probe == plain, f"{path} went to FastAPI"
    assert served[0] in (200, 404) and served[1] == "application/json"
    if served[0] == 200 and "include_task_results=true" in path:
        assert json.loads(served[2])["task_results"] == [{"seq": 0, "slug": "shell", "status": "success"}]
    if served[0] == 200 and "logs" in path and "offset=1&limit=1" in path:
        assert [line["message"] for line in json.loads(served[2])["logs"]] == ["line 1"]


ROUTED = [
    ("/proxy/deployments/{deployment}", {}),  # no token
    ("/proxy/deployments/{deployment}", {"Authorization": "Bearer wrong"}),
    ("/proxy/deployments/{deployment}", {"Authorization": f"bearer {TOKEN}"}),  # FastAPI's HTTPBearer accepts it
    ("/proxy/deployments/{hex}", AUTH),  # a UUID without its dashes (pydantic reads it)
    ("/proxy/deployments/not-a-uuid", AUTH),
    ("/proxy/flow_runs/{run}?include_task_results=yes", AUTH),  # FastAPI reads "yes" as true
    ("/proxy/flow_runs/{run}?include_task_results=maybe", AUTH),
    ("/proxy/flow_runs/{run}?include_task_results=true&include_task_results=false", AUTH),
    ("/proxy/flow_runs/{run}?verbose=1", AUTH),  # unknown: FastAPI ignores it
    ("/proxy/flow_runs/logs/{run}?offset=-1", AUTH),
    ("/proxy/flow_runs/logs/{run}?limit=0", AUTH),
    ("/proxy/flow_runs/logs/{run}?limit=201", AUTH),
    ("/proxy/flow_runs/logs/{run}?offset=", AUTH),
    ("/proxy/flow_runs/logs/{run}?offset=1e3", AUTH),
]


@pytest.mark.parametrize(("path", "headers"), ROUTED)
def test_what_the_hot_reads_are_not_sure_about_goes_to_fastapi(apps, objects, path, headers):
    path = path.format(**objects, hex=uuid.UUID(objects["deployment"]).hex)
    served, plain, probe = _answers(apps, path, headers)
    assert served == plain, path
    # the probe's route failed, or FastAPI refused the token before reaching it (the hot reads never answer 401)
    assert probe[0] == 500 or (plain[0] == 401 and probe == plain), (path, plain[:2], probe[:2])


def test_the_probe_fails_where_fastapi_answers(apps, objects):
    """The probe is sound: a read the hot reads do not serve (a secret) fails there, and works elsewhere."""
    served, plain, probe = _answers(apps, "/proxy/blocks/secret/no-such-secret", AUTH)
    assert served == plain and served[0] == 404
    assert probe[0] == 500


def test_the_log_pages_defaults_and_bounds_are_the_routes(apps):
    """The hot logs read pages as the route does: the same defaults and bounds, as the route documents them."""
    operation = apps[1].get("/openapi.json").json()["paths"]["/proxy/flow_runs/logs/{flow_run_id}"]["get"]
    documented = {
        parameter["name"]: (
            parameter["schema"]["default"],
            parameter["schema"]["minimum"],
            parameter["schema"]["maximum"],
        )
        for parameter in operation["parameters"]
        if parameter["in"] == "query"
    }
    assert documented == hot_reads.LOG_PAGE
