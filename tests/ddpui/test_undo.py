"""UndoStack, the one way services (and the block migration) undo external steps when a later step fails."""

from __future__ import annotations

import logging

import pytest

from ddpui.services.undo import UndoStack


def failing():
    raise ConnectionError("secret-value-never-logged")


def test_an_error_undoes_the_steps_newest_first_and_is_what_the_caller_sees(caplog):
    done = []
    with pytest.raises(ValueError, match="the third step"), UndoStack("creating the thing") as undo:
        undo.push("first", lambda: done.append("first"))
        undo.push("second", failing)
        undo.push("third", lambda: done.append("third"))
        raise ValueError("the third step")
    assert done == ["third", "first"]  # a failing undo does not stop the others
    assert [record.levelno for record in caplog.records] == [logging.ERROR]
    assert "creating the thing failed and undoing 'second' failed too (ConnectionError)" in caplog.text
    assert "secret-value-never-logged" not in caplog.text


def test_success_undoes_nothing():
    done = []
    with UndoStack("creating the thing") as undo:
        undo.push("first", lambda: done.append("first"))
    assert done == []


def test_unwind_reports_what_could_not_be_undone_and_undoes_each_step_once():
    done = []
    undo = UndoStack("migrating acme")
    undo.push("parameters of deployment d1", lambda: done.append("d1"))
    undo.push("dbt CLI profile Secret p", failing)
    assert undo.unwind() == ["could not undo 'dbt CLI profile Secret p' (ConnectionError): fix it by hand"]
    assert done == ["d1"]
    assert undo.unwind() == [] and done == ["d1"]
