"""The cron check (ddpui/services/cron.py): pure, no Prefect server. Every expression it accepts, Prefect's own
cron parser accepts too, so a schedule that passes it is never refused later by the proxy (a 502)."""

from __future__ import annotations

import pytest
from prefect._vendor.croniter import croniter

from ddpui.errors import InvalidInput
from ddpui.services.cron import cron_check

ACCEPTED = [
    ("0 2 * * *", "0 2 * * *"),
    ("  30 3 * * 1  ", "30 3 * * 1"),
    ("0 1 * * 1,3,5", "0 1 * * 1,3,5"),  # the web app's weekly schedule
    ("*/15 * * * *", "*/15 * * * *"),
    ("0 0-23/2 * * *", "0 0-23/2 * * *"),
    ("5/10 * * * *", "5/10 * * * *"),
    ("59 23 31 12 7", "59 23 31 12 7"),
    ("0 0 1 JAN,jul MON-FRI", "0 0 1 JAN,jul MON-FRI"),
    ("0  0 1 * 0", "0 0 1 * 0"),
]

# expression -> words the 400's detail must contain (the field at fault, and what to use instead)
REFUSED = [
    ("61 25 * * *", ["minute", "61", "0-59"]),
    ("99 99 99 99 99", ["minute", "99"]),
    ("0 24 * * *", ["hour", "24", "0-23"]),
    ("0 0 0 * *", ["day of month", "1-31"]),
    ("0 0 32 * *", ["day of month"]),
    ("0 0 * 13 *", ["month", "1-12"]),
    ("0 0 * * 8", ["day of week", "0-7"]),
    ("0 0 * * MON-FOO", ["day of week", "FOO"]),
    ("*/0 * * * *", ["minute", "step of 0"]),
    ("30-10 * * * *", ["minute", "backwards"]),
    ("0 2 * *", ["4 field(s)", "5"]),
    ("0 2 * * * *", ["6 field(s)"]),
    ("every day", ["2 field(s)"]),
    ("0 2 * * 1;rm", ["day of week"]),
    ("0 2 L * *", ["day of month"]),
    ("0 H * * *", ["hour"]),
]


@pytest.mark.parametrize("expression, normalized", ACCEPTED)
def test_accepted_expressions_are_normalized_and_prefect_accepts_them(expression, normalized):
    assert cron_check(expression) == normalized
    assert croniter.is_valid(normalized)


@pytest.mark.parametrize("expression, words", REFUSED)
def test_refused_expressions_name_the_field_at_fault(expression, words):
    with pytest.raises(InvalidInput) as refused:
        cron_check(expression)
    assert refused.value.status_code == 400
    for word in words:
        assert word in refused.value.message, (expression, refused.value.message)
    assert expression.strip() in refused.value.message


@pytest.mark.parametrize("blank", [None, "", "   "])
def test_no_schedule(blank):
    assert cron_check(blank) is None
