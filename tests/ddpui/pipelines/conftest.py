"""An org with enough set-up for pipelines: an Airbyte server block name, a dbt workspace, sync and dbt tasks.

The block names need not exist in Prefect for deployments to be created; tests that run flows for real
use the full set-up through the API instead (tests/support/orgsetup.py).
"""

import pytest

from ddpui.models import OrgPrefectBlockv1, OrgTask, Task
from tests.factories import make_dbt_workspace, make_org, make_orgtask, make_orguser
from tests.support.prefect_rest import prefect_request


def make_pipeline_org(name: str = "Pipelines Org", role: str = "pipeline-manager", connections: int = 2):
    org = make_org(name)
    orguser = make_orguser(org, role)
    OrgPrefectBlockv1.objects.create(
        org=org, block_type="Airbyte Server", block_id="b1", block_name=f"{org.slug}-airbyte-server"
    )
    make_dbt_workspace(
        org,
        gitrepo_access_token_secret=f"{org.slug}-git-pull-url",
        profile_block=f"{org.slug}-dbt-profile",
    )
    sync = Task.objects.get(slug="airbyte-sync")
    syncs = [
        OrgTask.objects.create(org=org, task=sync, connection_id=f"conn-{org.slug}-{i}") for i in range(connections)
    ]
    transforms = {slug: make_orgtask(org, slug) for slug in ["git-pull", "dbt-deps", "dbt-run", "dbt-test"]}
    return org, orguser, syncs, transforms


IDLE_POOL = "ddpui-idle"  # no worker polls it: runs stay scheduled, whatever other tests started


@pytest.fixture(autouse=True)
def idle_work_pool(settings, live_services, prefect_server):
    prefect_request(
        "POST", f"{prefect_server.api_url}/work_pools/", json={"name": IDLE_POOL, "type": "process"}, expect=(201, 409)
    )
    settings.PREFECT_WORK_POOL = IDLE_POOL


@pytest.fixture
def pipeline_org(db):
    return make_pipeline_org()
