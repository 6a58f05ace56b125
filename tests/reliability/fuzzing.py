"""What the two fuzz tests share: the checks, the case strategy aimed partly at real objects, and the loop that
fuzzes every operation of a schema and reports all failures at once."""

from __future__ import annotations

import os
from typing import Any

import hypothesis
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

# CI runs a fixed, reproducible sample; DDPUI_FUZZ_RANDOM=1 (and more examples) explores new inputs
MAX_EXAMPLES = int(os.environ.get("DDPUI_FUZZ_EXAMPLES", "25"))
DERANDOMIZE = os.environ.get("DDPUI_FUZZ_RANDOM", "") != "1"


def errors_have_detail(ctx, response, case) -> bool | None:
    """Every 4xx answer is `{"detail": "<non-empty message>"}`."""
    if 400 <= response.status_code < 500:
        body = response.json()
        assert isinstance(body, dict) and isinstance(body.get("detail"), str) and body["detail"].strip(), (
            f"{case.method} {case.formatted_path} -> {response.status_code} without a detail message: {body!r}"
        )
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
    errors_have_detail,
]


def describe(error: BaseException, depth: int = 0) -> str:
    """The error and, for a group (schemathesis failures, hypothesis' "unreliable" reports), what is inside."""
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, BaseExceptionGroup) and depth < 3:
        inner = "\n".join(describe(sub, depth + 1) for sub in error.exceptions)
        text += "\n" + "\n".join("    " + line for line in inner.splitlines())
    return text


def case_strategy(operation, real_ids: dict[str, list[str]]):
    """Generated cases (valid and invalid), plus valid cases whose path parameters are real objects."""
    strategies = [
        operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
        operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
    ]
    known = [parameter.name for parameter in operation.path_parameters if parameter.name in real_ids]
    if known:
        choices = st.fixed_dictionaries({name: st.sampled_from(real_ids[name]) for name in known})
        strategies.append(
            choices.flatmap(
                lambda fixed: operation.as_strategy(schemathesis.GenerationMode.POSITIVE, path_parameters=fixed)
            )
        )
    return st.one_of(strategies)


def operations_of(schema, real_ids: dict[str, list[str]]) -> list:
    """Every operation of the schema; fails when a path parameter that names an object has no real ids to try
    (a new id kind must be seeded by the test)."""
    # The token is sent explicitly (and `ignored_auth` checks it is enforced), so the generator must not also
    # produce or negate the Authorization header; unknown query parameters are ignored, as by most frameworks,
    # so "extra parameter" cases are not generated as invalid data.
    schema.config.generation.update(with_security_parameters=False, allow_extra_parameters=False)
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        for parameter in operation.path_parameters:
            assert parameter.name in real_ids or parameter.definition.get("schema", {}).get("enum"), (
                f"{operation.label}: no real ids for path parameter {parameter.name}"
            )
    return operations


def fuzz_failures(operations: list, real_ids: dict[str, list[str]], **call: Any) -> list[str]:
    """Fuzzes each operation (MAX_EXAMPLES cases) with `case.call_and_validate(checks=CHECKS, **call)`;
    returns every operation's failures, described."""
    failures: list[str] = []
    for operation in operations:

        @given(case=case_strategy(operation, real_ids))
        @hypothesis.settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            derandomize=DERANDOMIZE,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        )
        def fuzz(case):
            case.call_and_validate(checks=CHECKS, **call)

        try:
            fuzz()
        except (Exception, BaseExceptionGroup) as error:  # noqa: BLE001 - report every operation's failures at once
            failures.append(f"{operation.label}:\n{describe(error)}")
    return failures
