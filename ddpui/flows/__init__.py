"""The body of the flows the Prefect worker runs (`prefect_flows.py` holds only their entrypoints).

Importable without Django: nothing here (nor in `ddpui/__init__.py`) imports Django or the proxy, so a
worker needs only this package, `ddpcontract` and `prefect_flows.py`. One module per concern:

- `redaction`: every secret the run touches is registered and removed from logs, messages and results;
- `profiles`: the dbt profile, built in memory from the Secret block's JSON;
- `attempts`: one attempt of a task (its deadline, its process, how it fails);
- `shell`, `dbt`, `airbyte`: one runner per kind of operation;
- `legacy`: the persisted operation blocks of the old block-based world;
- `pipeline`: the orchestration loop (tasks in order, retries, results, the run's final state).
"""
