"""Airbyte's connector catalogue as the org's workspace offers it: definitions, their specifications, and
connection checks of a configuration before anything is saved.

A configuration is checked against the connector's specification (a JSON Schema) here first, so a caller
learns which field to fix; a check Airbyte runs and that fails (wrong password, unknown host) is an error
carrying Airbyte's message.
"""

from __future__ import annotations

from dataclasses import dataclass

from ddpui.airbyte.client import AirbyteNotFound, get_airbyte
from ddpui.airbyte.specs import config_problems
from ddpui.errors import InvalidInput, NotFound
from ddpui.models.org import Org

MASK = "**********"


class ConnectionCheckFailed(InvalidInput):
    """Airbyte ran the connector's check and the connector could not connect with the configuration."""


@dataclass(frozen=True)
class CheckResult:
    message: str
    logs: list[str]


def require_workspace(org: Org) -> str:
    if not org.airbyte_workspace_id:
        raise InvalidInput(
            "your organization has no Airbyte workspace: create one with POST /api/airbyte/v1/workspace/"
        )
    return org.airbyte_workspace_id


def source_definitions_list(*, org: Org) -> list[dict]:
    """Airbyte's source definitions for the org's workspace (as Airbyte describes them)."""
    return get_airbyte().source_definitions(workspace_id=require_workspace(org))


def destination_definitions_list(*, org: Org) -> list[dict]:
    return get_airbyte().destination_definitions(workspace_id=require_workspace(org))


def source_specification(*, org: Org, definition_id: str) -> dict:
    """The specification read: {connectionSpecification (a JSON Schema), documentationUrl, ...}."""
    try:
        return get_airbyte().source_definition_spec(workspace_id=require_workspace(org), definition_id=definition_id)
    except AirbyteNotFound:
        raise NotFound(
            f"source definition {definition_id} not found: choose one of GET /api/airbyte/source_definitions"
        ) from None


def destination_specification(*, org: Org, definition_id: str) -> dict:
    try:
        return get_airbyte().destination_definition_spec(
            workspace_id=require_workspace(org), definition_id=definition_id
        )
    except AirbyteNotFound:
        raise NotFound(
            f"destination definition {definition_id} not found: choose one of GET /api/airbyte/destination_definitions"
        ) from None


def config_check_against_spec(*, specification: dict, config: dict, connector: str) -> None:
    """InvalidInput naming every field the configuration gets wrong for the connector."""
    problems = config_problems(specification.get("connectionSpecification") or {}, config)
    if problems:
        raise InvalidInput(f"the configuration does not fit the {connector} specification: {'; '.join(problems)}")


def _outcome(response: dict) -> CheckResult:
    logs = ((response.get("jobInfo") or {}).get("logs") or {}).get("logLines") or []
    message = response.get("message") or ""
    if response.get("status") != "succeeded":
        reason = message or "the connector gave no reason (see its logs in Airbyte)"
        raise ConnectionCheckFailed(f"the connection check failed: {reason}")
    return CheckResult(message=message, logs=list(logs))


def _definition_name(definitions: list[dict], key: str, definition_id: str, kind: str) -> str:
    found = next((d for d in definitions if d.get(key) == definition_id), None)
    if found is None:
        raise NotFound(
            f"{kind} definition {definition_id} not found: choose one of GET /api/airbyte/{kind}_definitions"
        )
    return found["name"]


def source_config_check(*, org: Org, definition_id: str, config: dict) -> None:
    """A new source's configuration against its connector's specification (404 unknown definition)."""
    specification = source_specification(org=org, definition_id=definition_id)
    name = _definition_name(source_definitions_list(org=org), "sourceDefinitionId", definition_id, "source")
    config_check_against_spec(specification=specification, config=config, connector=name)


def source_check(*, org: Org, definition_id: str, config: dict) -> CheckResult:
    """Checks a new source's configuration: its specification, then Airbyte's connection check."""
    source_config_check(org=org, definition_id=definition_id, config=config)
    airbyte = get_airbyte()
    return _outcome(
        airbyte.source_check(workspace_id=org.airbyte_workspace_id, definition_id=definition_id, config=config)
    )


def destination_check(*, org: Org, definition_id: str, config: dict) -> CheckResult:
    specification = destination_specification(org=org, definition_id=definition_id)
    definitions = destination_definitions_list(org=org)
    name = _definition_name(definitions, "destinationDefinitionId", definition_id, "destination")
    config_check_against_spec(specification=specification, config=config, connector=name)
    airbyte = get_airbyte()
    return _outcome(
        airbyte.destination_check(workspace_id=org.airbyte_workspace_id, definition_id=definition_id, config=config)
    )


def source_check_for_update(*, org: Org, source: dict, name: str, config: dict) -> CheckResult:
    """Checks new settings of an existing source (masked secrets stand for the stored ones: Airbyte
    merges them in)."""
    specification = source_specification(org=org, definition_id=source["sourceDefinitionId"])
    config_check_against_spec(
        specification=specification, config=config, connector=source.get("sourceName") or "source"
    )
    response = get_airbyte().source_check_for_update(source_id=source["sourceId"], name=name, config=config)
    return _outcome(response)


def destination_check_for_update(*, org: Org, destination: dict, name: str, config: dict) -> CheckResult:
    specification = destination_specification(org=org, definition_id=destination["destinationDefinitionId"])
    connector = destination.get("destinationName") or "destination"
    config_check_against_spec(specification=specification, config=config, connector=connector)
    response = get_airbyte().destination_check_for_update(
        destination_id=destination["destinationId"], name=name, config=config
    )
    return _outcome(response)
