"""dbt profiles, built in memory from the JSON held in the org's profile Secret block (docs/flows.md)."""

from __future__ import annotations

import functools
import json
import warnings
from types import SimpleNamespace
from typing import TYPE_CHECKING

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


class ProfileError(ValueError):
    """The dbt profile JSON held in the Secret block does not follow the contract."""


_REQUIRED_CREDENTIALS = {
    "postgres": ("host", "port", "user", "password", "dbname"),
    "duckdb": ("path",),
    "bigquery": ("project", "method", "keyfile_json"),
}


def _parse_profile_json(profile_json: dict | str) -> dict:
    if isinstance(profile_json, str):
        try:
            profile_json = json.loads(profile_json)
        except json.JSONDecodeError as error:
            raise ProfileError(f"the dbt profile secret is not valid JSON (line {error.lineno})") from None
    if not isinstance(profile_json, dict):
        raise ProfileError("the dbt profile secret must hold a JSON object")
    missing = [key for key in ("profile_name", "target", "type", "schema", "credentials") if not profile_json.get(key)]
    if missing:
        raise ProfileError(f"the dbt profile secret lacks {', '.join(missing)}")
    warehouse = profile_json["type"]
    if warehouse not in _REQUIRED_CREDENTIALS:
        raise ProfileError(f"unsupported warehouse type {warehouse!r}; expected one of {sorted(_REQUIRED_CREDENTIALS)}")
    credentials = profile_json["credentials"]
    if not isinstance(credentials, dict):
        raise ProfileError("the dbt profile secret's credentials must be a JSON object")
    missing = [key for key in _REQUIRED_CREDENTIALS[warehouse] if credentials.get(key) in (None, "")]
    if missing:
        raise ProfileError(f"the {warehouse} credentials lack {', '.join(missing)}")
    return profile_json


def _target_extras(warehouse: str, credentials: dict) -> dict:
    extras = {key: value for key, value in credentials.items() if value is not None}
    if warehouse == "postgres":
        extras["port"] = int(extras["port"])
    if warehouse == "bigquery" and isinstance(extras["keyfile_json"], str):
        try:
            extras["keyfile_json"] = json.loads(extras["keyfile_json"])
        except json.JSONDecodeError:
            raise ProfileError("the bigquery keyfile_json is not valid JSON") from None
    return extras


def build_dbt_cli_profile(profile_json: dict | str) -> DbtCliProfile:
    """The in-memory DbtCliProfile for the profile JSON of the contract (see docs/flows.md)."""
    profile = _parse_profile_json(profile_json)
    extras = _target_extras(profile["type"], profile["credentials"])
    dbt = prefect_dbt()
    target_configs = dbt.TargetConfigs(
        type=profile["type"],
        schema=profile["schema"],
        threads=int(profile.get("threads") or 4),
        extras=extras,
    )
    return dbt.DbtCliProfile(name=profile["profile_name"], target=profile["target"], target_configs=target_configs)


def render_profile(profile_json: dict | str) -> dict:
    """The profiles.yml content (as a dict) that a dbt task writes for this profile JSON."""
    return build_dbt_cli_profile(profile_json).get_profile()
