"""The flows' entrypoints: each names a flow in prefect_flows.py, with that flow's name and parameters."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ddpcontract.flows import FLOW_NAME_BY_ENTRYPOINT, PARAMETERS_BY_ENTRYPOINT, Entrypoint

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("entrypoint", list(Entrypoint))
def test_each_entrypoint_names_a_flow_with_its_name_and_parameters(entrypoint):
    import prefect_flows

    path, function = entrypoint.value.split(":")
    assert (REPO_ROOT / path).is_file()
    flow = getattr(prefect_flows, function)
    assert flow.name == FLOW_NAME_BY_ENTRYPOINT[entrypoint]
    assert set(inspect.signature(flow.fn).parameters) == PARAMETERS_BY_ENTRYPOINT[entrypoint]


def test_the_contract_and_the_flows_import_no_django():
    """A worker runs the flows without Django; every process imports the contract."""
    script = (
        "import json, sys\n"
        "import ddpcontract.flows, ddpcontract.states, ddpcontract.tasks\n"
        "contract = sorted(name for name in sys.modules if name.split('.')[0] in ('django', 'prefect', 'fastapi'))\n"
        "import ddpui.flows.pipeline, prefect_flows\n"
        "flows = sorted(name for name in sys.modules if name.split('.')[0] in ('django', 'ninja', 'proxy')\n"
        "               or (name.startswith('ddpui.') and not name.startswith('ddpui.flows')))\n"
        "print(json.dumps({'contract': contract, 'flows': flows}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    imported = json.loads(done.stdout.strip().splitlines()[-1])
    assert imported == {"contract": [], "flows": []}
