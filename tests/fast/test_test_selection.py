"""Which tests the PostgreSQL pass of scripts/test.sh runs (`--database-tests-only`, tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests.conftest import transactional_without_serialized_rollback, uses_django_database


class _Item:
    """The two things the selection reads of a collected test: its fixture closure and its markers."""

    def __init__(self, fixtures: tuple[str, ...], markers: tuple[str, ...]):
        self.fixturenames = list(fixtures)
        self._markers = set(markers)

    def get_closest_marker(self, name: str):
        return pytest.mark.__getattr__(name) if name in self._markers else None


# every test gets pytest-django's blocker and environment, whether or not it opens the database
_ALWAYS = ("django_db_blocker", "django_test_environment")


@pytest.mark.parametrize(
    ("fixtures", "markers", "kept"),
    [
        ((*_ALWAYS, "monkeypatch"), (), False),  # a proxy or pure-logic test
        ((*_ALWAYS, "prefect_server", "api"), ("prefect",), False),  # the proxy against Prefect
        ((*_ALWAYS, "db"), (), True),  # pytest-django's database fixture
        ((*_ALWAYS, "transactional_db"), (), True),
        ((*_ALWAYS,), ("django_db",), True),  # the marker (pytest-django opens the database itself)
        ((*_ALWAYS, "demo"), ("e2e",), True),  # the demo gets the pass's DATABASE_URL
        ((*_ALWAYS, "layout"), ("postgres_pass",), True),  # another process opens the database
    ],
)
def test_the_postgresql_pass_keeps_exactly_the_tests_that_reach_djangos_database(fixtures, markers, kept):
    assert uses_django_database(_Item(fixtures, markers)) is kept


class _Marked:
    def __init__(self, marker):
        self.marker = marker

    def get_closest_marker(self, name: str):
        return self.marker if name == "django_db" else None


@pytest.mark.parametrize(
    ("marker", "refused"),
    [
        (None, False),
        (pytest.mark.django_db.mark, False),
        (pytest.mark.django_db(transaction=True).mark, True),  # its flush would break the next serialized tests
        (pytest.mark.django_db(transaction=True, serialized_rollback=True).mark, False),
        (pytest.mark.django_db(serialized_rollback=True).mark, False),
    ],
)
def test_a_transactional_test_without_serialized_rollback_is_refused_at_collection(marker, refused):
    assert bool(transactional_without_serialized_rollback(_Marked(marker))) is refused
