"""dbt profiles, built in memory from the JSON held in the org's profile Secret block (docs/flows.md)."""

from __future__ import annotations

import dataclasses
import functools
import warnings
from types import SimpleNamespace
from typing import TYPE_CHECKING

from ddpcontract.warehouses import ProfileError, profile_target

__all__ = ["ProfileError", "build_dbt_cli_profile", "prefect_dbt", "render_profile"]

if TYPE_CHECKING:
    from prefect_dbt.cli.credentials import DbtCliProfile


@functools.cache
def prefect_dbt() -> SimpleNamespace:
    """prefect-dbt's classes, imported on first use: importing them loads dbt-core (seconds of CPU), which
    a flow run without dbt tasks does not need (the dbt commands themselves run in their own process)."""
    with warnings.catch_warnings():
        # prefect_dbt.cli announces its deprecation in favour of prefect_dbt.core on import; the
        # DbtCoreOperation this project's tasks are built on lives only there
        warnings.simplefilter("ignore", UserWarning)
        from prefect_dbt.cli.commands import DbtCoreOperation
        from prefect_dbt.cli.configs import TargetConfigs
        from prefect_dbt.cli.credentials import DbtCliProfile
    return SimpleNamespace(DbtCoreOperation=DbtCoreOperation, TargetConfigs=TargetConfigs, DbtCliProfile=DbtCliProfile)


def build_dbt_cli_profile(profile_json: dict | str, target_name: str | None = None) -> DbtCliProfile:
    """The in-memory DbtCliProfile for the profile JSON of the contract (see docs/flows.md); the warehouse
    type's fields are checked by the registry (`ddpcontract.warehouses`). `target_name`, when given, is the
    target's name in the profile (the task's dbt target) whatever name the JSON holds."""
    target = profile_target(profile_json)
    if target_name:
        target = dataclasses.replace(target, target=target_name)
    dbt = prefect_dbt()
    target_configs = dbt.TargetConfigs(
        type=target.type.value, schema=target.schema, threads=target.threads, extras=target.extras
    )
    return dbt.DbtCliProfile(name=target.profile_name, target=target.target, target_configs=target_configs)


def render_profile(profile_json: dict | str) -> dict:
    """The profiles.yml content (as a dict) that a dbt task writes for this profile JSON."""
    return build_dbt_cli_profile(profile_json).get_profile()
