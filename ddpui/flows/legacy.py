"""The block-based world: pipelines whose tasks are persisted AirbyteConnection / ShellOperation /
DbtCoreOperation blocks, named in the legacy parameters `airbyte_blocks` and `dbt_blocks`."""

from __future__ import annotations

from airbyte_prefect.connections import AirbyteConnection
from prefect_shell import ShellOperation

from ddpcontract.tasks import TaskType
from ddpui.flows.airbyte import SyncSpec, airbyte_api, run_sync
from ddpui.flows.attempts import Deadline
from ddpui.flows.dbt import dbt_env, dbt_operation_copy, fresh_profiles_dir, run_dbt
from ddpui.flows.profiles import prefect_dbt
from ddpui.flows.redaction import register_credential_secrets
from ddpui.flows.shell import build_shell_operation, run_shell

_TASK_TYPES = [task_type.value for task_type in TaskType]


def legacy_block_type(entry: dict, default: TaskType) -> TaskType:
    block_type = entry.get("blockType") or default
    if block_type not in _TASK_TYPES:
        raise ValueError(
            f"block {entry.get('blockName')!r} has blockType {block_type!r}; expected one of {_TASK_TYPES}"
        )
    return TaskType(block_type)


def legacy_blocks(airbyte_blocks: list | None, dbt_blocks: list | None) -> list[tuple[int, str, TaskType]]:
    """(seq, block name, block type) of the legacy parameters: Airbyte blocks first, then dbt / shell
    blocks, each group in seq order (the old flow's order)."""
    blocks = []
    groups = ((airbyte_blocks or [], TaskType.AIRBYTE_CONNECTION), (dbt_blocks or [], TaskType.DBT_CORE_OPERATION))
    for entries, default_type in groups:
        for entry in sorted(entries, key=lambda entry: entry.get("seq", 0)):
            if not entry.get("blockName"):
                raise ValueError(f"legacy block entry without blockName: {entry!r}")
            blocks.append((int(entry.get("seq", 0)), entry["blockName"], legacy_block_type(entry, default_type)))
    if not blocks:
        raise ValueError("no airbyte_blocks or dbt_blocks to run")
    return blocks


def execute_legacy_block(name: str, block_type: TaskType, deadline: Deadline, task_key: str) -> dict:
    """Load the block by name and run it like the task it stands for."""
    if block_type == TaskType.AIRBYTE_CONNECTION:
        connection = AirbyteConnection.load(name)
        api = airbyte_api(connection.airbyte_server)
        spec = SyncSpec(
            connection_id=str(connection.connection_id),
            poll_seconds=float(connection.poll_interval_s),
            limit_seconds=float(connection.max_wait_seconds) if connection.max_wait_seconds else None,
            task_key=task_key,
        )
        try:
            return run_sync(api, spec)
        finally:
            api.close()
    if block_type == TaskType.SHELL_OPERATION:
        block = ShellOperation.load(name)
        operation = build_shell_operation(block.commands, block.working_dir, block.env)
        return run_shell(operation, deadline)
    block = prefect_dbt().DbtCoreOperation.load(name)
    if block.dbt_cli_profile is None:  # the block relies on a profiles.yml already on disk
        return run_dbt(dbt_operation_copy(block, env=dbt_env(block.env)), name, deadline)
    register_credential_secrets(block.dbt_cli_profile.target_configs.get_configs())
    with fresh_profiles_dir() as profiles_dir:
        operation = dbt_operation_copy(
            block, profiles_dir=profiles_dir, overwrite_profiles=True, env=dbt_env(block.env)
        )
        return run_dbt(operation, name, deadline)
