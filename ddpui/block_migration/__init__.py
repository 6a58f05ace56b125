"""Moves an org from persisted operation blocks (OrgPrefectBlock, OrgDataFlow, DataflowBlock, BlockLock) to
tasks (OrgPrefectBlockv1, OrgTask, OrgDataFlowv1, DataflowOrgTask), keeping every deployment and its id.

Each phase is first *planned* for an org: a list of changes, empty when there is nothing left to do (so a second
run is a no-op and a dry run prints exactly what a real run would do). Applying a plan happens inside one
database transaction per org, with an undo log for what it changed in Prefect: when a change fails, the
transaction rolls back and the Prefect changes already made are undone, newest first. Runbook: docs/migration.md.

- `dbt_commands`: a dbt command line reduced to its master task, flags and options;
- `comparison`: what a deployment runs, as comparable steps, from old blocks or a task config;
- `legacy`: the legacy reader: an org's block-based world, read once;
- `tasks`: finds or makes the org task that runs a step;
- `changes`: a planned change and the undo log of Prefect changes;
- `planner`: one small planner class per phase (1, 2, entrypoint switch, rollback, 3);
- `verification`: old blocks against new tasks, deployment by deployment;
- `runner`: plans a phase for an org and applies it all or nothing (the management commands call it).
"""
