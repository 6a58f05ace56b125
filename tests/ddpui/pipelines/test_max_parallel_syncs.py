"""A pipeline's limit of syncs run at once (maxParallelSyncs): stored, written into its deployment's task
config, shown, kept when an update leaves it out, refused out of range."""

import pytest
from django.test import Client

from ddpui.models import OrgDataFlowv1
from tests.factories import auth_headers
from tests.support.prefect_rest import prefect_request

pytestmark = [pytest.mark.django_db, pytest.mark.prefect]


def deployment_limit(deployment_id: str) -> int | None:
    config = prefect_request("GET", f"deployments/{deployment_id}").json()["parameters"]["config"]
    return config.get("max_parallel_syncs")


def test_the_limit_reaches_the_task_config_and_an_update_without_it_keeps_it(live_services, pipeline_org):
    org, orguser, syncs, _ = pipeline_org
    client, headers = Client(), auth_headers(orguser)
    connections = [{"id": sync.connection_id, "seq": seq} for seq, sync in enumerate(syncs)]

    def send(method, path, **body):
        payload = {"name": "parallel", "connections": connections, "cron": None, **body}
        return getattr(client, method)(path, payload, content_type="application/json", **headers)

    default = send("post", "/api/prefect/v1/flows/", name="default limit")
    assert default.status_code == 200, default.content
    assert deployment_limit(default.json()["deploymentId"]) == 4

    created = send("post", "/api/prefect/v1/flows/", maxParallelSyncs=2)
    deployment_id = created.json()["deploymentId"]
    assert OrgDataFlowv1.objects.get(deployment_id=deployment_id).max_parallel_syncs == 2
    assert deployment_limit(deployment_id) == 2
    path = f"/api/prefect/v1/flows/{deployment_id}"
    assert client.get(path, **headers).json()["maxParallelSyncs"] == 2

    kept = send("put", path, name="renamed")
    assert kept.status_code == 200, kept.content
    assert kept.json()["maxParallelSyncs"] == 2 and deployment_limit(deployment_id) == 2
    one_by_one = send("put", path, maxParallelSyncs=1)
    assert one_by_one.json()["maxParallelSyncs"] == 1 and deployment_limit(deployment_id) == 1

    for wrong in (0, 17, "four"):
        refused = send("post", "/api/prefect/v1/flows/", maxParallelSyncs=wrong)
        assert refused.status_code == 422 and "maxParallelSyncs" in refused.json()["detail"], refused.content
