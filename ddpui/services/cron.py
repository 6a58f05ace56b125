"""Cron expressions, checked before anything reaches Prefect: a mistake is a 400 naming the field to fix.

Five fields (minute hour day-of-month month day-of-week), each a comma-separated list of `*`, a value, a
range `a-b`, optionally stepped (`*/15`, `1-30/2`, `5/10`); months and weekdays may be written as names
(`JAN`, `MON`). Pure: no Prefect, no database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ddpui.errors import InvalidInput


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # names[i] stands for low + i


_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, _MONTHS),
    _Field("day of week", 0, 7, _DAYS),  # 0 and 7 are both Sunday
)
_ITEM = re.compile(r"^(?P<range>\*|[0-9A-Za-z]+(?:-[0-9A-Za-z]+)?)(?:/(?P<step>[0-9]+))?$")


def _value(field: _Field, token: str, expression: str) -> int:
    upper = token.upper()
    if upper in field.names:
        return field.low + field.names.index(upper)
    if not token.isdigit():
        allowed = f"{field.low}-{field.high}" + (f" or a name ({', '.join(field.names[:3])}…)" if field.names else "")
        raise InvalidInput(f"cron '{expression}': the {field.name} field has '{token}': use {allowed}")
    number = int(token)
    if not field.low <= number <= field.high:
        raise InvalidInput(f"cron '{expression}': the {field.name} field is {number}, outside {field.low}-{field.high}")
    return number


def _check_field(field: _Field, text: str, expression: str) -> None:
    for item in text.split(","):
        match = _ITEM.match(item)
        if match is None:
            raise InvalidInput(
                f"cron '{expression}': the {field.name} field '{text}' is not a list of values, ranges "
                "(a-b) and steps (*/n)"
            )
        step = match.group("step")
        if step is not None and int(step) == 0:
            raise InvalidInput(f"cron '{expression}': the {field.name} field has a step of 0")
        if match.group("range") == "*":
            continue
        bounds = [_value(field, token, expression) for token in match.group("range").split("-")]
        if len(bounds) == 2 and bounds[0] > bounds[1]:
            raise InvalidInput(
                f"cron '{expression}': the {field.name} field has the range {item}, which runs backwards"
            )


def cron_check(expression: str | None) -> str | None:
    """The expression, stripped, or None for "no schedule" (None or blank). Raises InvalidInput naming the
    field at fault."""
    expression = (expression or "").strip()
    if not expression:
        return None
    parts = expression.split()
    if len(parts) != len(FIELDS):
        raise InvalidInput(
            f"cron '{expression}' has {len(parts)} field(s): use 5 (minute hour day-of-month month day-of-week), "
            "such as '0 2 * * *'"
        )
    for field, text in zip(FIELDS, parts, strict=True):
        _check_field(field, text, expression)
    return " ".join(parts)
