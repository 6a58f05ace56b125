"""The main command's demo, run as `scripts/run.sh` runs it: it ends with a Completed run, the dbt tables in
the warehouse and no process left running; a second start reuses everything the first one made."""

from __future__ import annotations

import duckdb
import pytest

from tests.e2e.conftest import outcome_number

pytestmark = pytest.mark.e2e

DBT_TABLES = {"customer_orders", "daily_revenue"}


def duckdb_tables(path, schema: str) -> set[str]:
    connection = duckdb.connect(str(path), read_only=True)
    try:
        rows = connection.execute(
            "select table_name from information_schema.tables where table_schema = ?", [schema]
        ).fetchall()
    finally:
        connection.close()
    return {row[0] for row in rows}


def test_demo_runs_the_pipeline_to_completed_and_stops_everything(demo):
    code, output = demo.run("--exit-after-run", timeout=420)

    assert code == 0, output[-6000:]
    assert "Completed in" in output
    assert outcome_number(output, "rows synced") == 40  # 2 streams x 20 rows
    assert outcome_number(output, "dbt models built") == 4
    assert outcome_number(output, "dbt tests passed") > 0
    assert "failed: 0" in output
    for url in ("/admin/", "/api/docs", f"http://127.0.0.1:{demo.ports['prefect']}"):
        assert url in output
    if demo.postgres is None:
        assert duckdb_tables(demo.data_dir / "warehouse" / "demo.duckdb", "analytics") >= DBT_TABLES
    else:
        assert demo.postgres.tables("analytics") >= DBT_TABLES
    assert demo.leftovers() == []
    assert demo.busy_ports() == []

    # running it again is safe: every step finds what the first run made
    code, output = demo.run("--exit-after-run", "--no-run", timeout=240)
    second = output.split("[demo] data directory")[-1]
    assert code == 0, second[-6000:]
    steps = [line.split("]", 1)[1].strip() for line in second.splitlines() if line.startswith("[demo]   ")]
    reused = [step for step in steps if step.startswith("reused ")]
    assert not [step for step in steps if step.startswith("created ")], second
    assert len(reused) == 7, reused  # org, warehouse, source, connection, dbt workspace, transform tasks, pipeline
    assert demo.leftovers() == []
    assert demo.busy_ports() == []
