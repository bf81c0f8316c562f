"""When squeue's word that a job ended means its run ended: a job its worker has just requeued
shows its old incarnation as FAILED or CANCELLED for a moment, which is not an end."""

from __future__ import annotations

import pytest

from core.backends.slurm import REQUEUE_GRACE_S, gone_for_good
from core.store.states import Status

NOW = 1_800_000_000.0


def _row(status: str, requeues: int, ago: float) -> dict:
    return {"id": "r", "job_id": "7", "status": status, "requeues": requeues,
            "status_at": NOW - ago}


@pytest.mark.parametrize(("row", "state", "ended"), [
    (_row(Status.RUNNING, 0, 5), "RUNNING", False),
    (_row(Status.RUNNING, 0, 5), "FAILED", True),  # the worker died without its end
    (_row(Status.RUNNING, 0, 5), "gone", True),
    (_row(Status.QUEUED, 0, 5), "CANCELLED", True),  # cancelled while pending
    (_row(Status.QUEUED, 1, 0.2), "FAILED", False),  # the incarnation the requeue ended
    (_row(Status.QUEUED, 1, 0.2), "gone", False),
    (_row(Status.QUEUED, 1, REQUEUE_GRACE_S + 1), "FAILED", True),  # the requeue never showed
    (_row(Status.RUNNING, 1, 0.2), "FAILED", True),  # the requeued job ran, then died
    (_row(Status.QUEUED, 1, 0.2), "PENDING", False),
])
def test_an_ended_state_ends_the_run_unless_its_worker_just_requeued_it(
        row: dict, state: str, ended: bool) -> None:
    assert gone_for_good(row, state, NOW) is ended
