"""A pipeline run sends its queued log lines to Prefect before its final state is recorded (flows/pipeline.py):
`_send_logs` must reach Prefect's log worker, and wait for it at most 5 s."""

from __future__ import annotations

from prefect.logging.handlers import APILogWorker

from ddpui.flows import pipeline


def test_send_logs_drains_prefects_log_worker_with_a_time_limit(monkeypatch):
    drained = []
    monkeypatch.setattr(APILogWorker, "drain_all", classmethod(lambda cls, timeout=None: drained.append(timeout)))
    pipeline._send_logs()
    assert drained == [5]


def test_send_logs_never_fails_the_run(monkeypatch):
    def broken(cls, timeout=None):
        raise ConnectionError("Prefect is gone")

    monkeypatch.setattr(APILogWorker, "drain_all", classmethod(broken))
    pipeline._send_logs()  # the run's own outcome decides its state, not the log shipping
