"""Connector configurations checked against their Airbyte specification (a JSON Schema) before Airbyte sees
them, so a caller learns which field to fix and nothing is created with a configuration the connector
cannot use. Messages name fields and rules only, never the values sent (they may be secrets)."""

from __future__ import annotations

from typing import Any

import jsonschema

_JSON_TYPES = {dict: "an object", list: "a list", str: "a string", bool: "true or false", type(None): "null"}


def _found(value: Any) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    return _JSON_TYPES.get(type(value), "a value")


def _field(path) -> str:
    return ".".join(str(part) for part in path)


def _options(schema: dict) -> str:
    titles = [str(option.get("title") or "") for option in schema.get("oneOf", []) if isinstance(option, dict)]
    return ", ".join(title for title in titles if title) or "its options"


def _problems(error: jsonschema.ValidationError) -> list[str]:
    rule, expected = error.validator, error.validator_value
    if rule == "required":
        present = error.instance if isinstance(error.instance, dict) else {}
        return [f"{_field([*error.absolute_path, key])} is required" for key in expected if key not in present]
    return [_problem(error)]


def _problem(error: jsonschema.ValidationError) -> str:
    where = _field(error.absolute_path)
    rule, expected = error.validator, error.validator_value
    label = where or "the configuration"
    if rule == "type":
        wanted = expected if isinstance(expected, str) else " or ".join(expected)
        return f"{label} must be {'an' if wanted[0] in 'aeiou' else 'a'} {wanted} (got {_found(error.instance)})"
    if rule == "minimum":
        return f"{label} must be at least {expected}"
    if rule == "maximum":
        return f"{label} must be at most {expected}"
    if rule in ("enum", "const"):
        values = expected if rule == "enum" else [expected]
        return f"{label} must be one of {', '.join(map(str, values))}"
    if rule == "oneOf":
        return f"{label} must match one of {_options(error.schema)}"
    if rule == "pattern":
        return f"{label} must match the pattern {expected}"
    if rule == "additionalProperties":
        return f"{label} has fields the specification does not allow"
    if rule in ("minItems", "maxItems", "uniqueItems", "minLength", "maxLength"):
        return f"{label} breaks the rule {rule} = {expected}"
    return f"{label} breaks the rule {rule}"


def config_problems(spec: dict[str, Any], config: Any) -> list[str]:
    """What a configuration breaks in a connector specification: an empty list when it fits."""
    if not isinstance(config, dict):
        return ["the configuration must be a JSON object"]
    validator = jsonschema.Draft7Validator(spec)
    return sorted({problem for error in validator.iter_errors(config) for problem in _problems(error)})
