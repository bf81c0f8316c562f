"""A run's status: the one enumeration, where each status sits in a run's life, how an ended run
ended, and which action may move a run from which status. Actions, the queue's scheduler, the
backends, the command line and the TUI read these; none of them lists statuses of its own.

A status is a `str` (the store and events.jsonl hold its value), so a row's `status` compares
equal to its member: `row["status"] == Status.QUEUED`.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    QUEUED = "queued"  # waiting: in the queue, or pending in Slurm
    STARTING = "starting"  # a worker is being started; it has not reported yet
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    SUSPENDING = "suspending"
    FINISHED = "finished"
    STOPPED = "stopped"
    SUSPENDED = "suspended"  # ended with its state saved; resume goes on from it
    FAILED = "failed"
    KILLED = "killed"
    LOST = "lost"  # its worker vanished without a final status
    BLOCKED = "blocked"  # a run it waits for ended without finishing
    CANCELLED = "cancelled"  # taken out of the queue before it started
    PRUNED = "pruned"  # a halving sweep's trial not promoted past a rung (its record stays)


S = Status
# where a status sits in a run's life
WAITING = (S.QUEUED,)
LIVE = (S.STARTING, S.RUNNING, S.PAUSED, S.STOPPING, S.SUSPENDING)  # a worker, holding its GPUs
ACTIVE = WAITING + LIVE
FINAL = (S.FINISHED, S.STOPPED, S.SUSPENDED, S.FAILED, S.KILLED, S.LOST, S.BLOCKED, S.CANCELLED,
         S.PRUNED)
STATUSES = ACTIVE + FINAL
HOLDING = LIVE  # a run in these holds its GPUs (a lease)
PROGRESSING = (S.RUNNING, S.PAUSED, S.SUSPENDING)  # inside an epoch: its step is shown

# how an ended run ended, apart from where it is in its life: as asked (its record is whole),
# or not (exit status 1, a bell and a notice in the TUI); a cancelled run never started
ENDED_AS_ASKED = (S.FINISHED, S.STOPPED, S.SUSPENDED, S.PRUNED)
ENDED_BADLY = (S.FAILED, S.KILLED, S.LOST, S.BLOCKED)

# which status each action may move a run from; an action's call site reads its row here
MAY: dict[str, tuple[Status, ...]] = {
    "start": WAITING,  # the scheduler claims a queued run for a worker
    "cancel": WAITING,  # out of the queue (or Slurm's), never started
    "block": WAITING,  # a run it waits for ended without finishing
    "prioritize": WAITING,
    "requeue": (S.STARTING,),  # the queue's claim whose worker never reported goes back
    "lose": LIVE,  # its worker is gone without a final status
    "pause": LIVE,
    "resume": (S.PAUSED,),  # a paused worker continues
    "suspend": LIVE,
    "stop": LIVE,
    "kill": ACTIVE,
    # a new worker goes on from the saved state: a suspended run by `resume`, any of these by
    # `restart`
    "restart": (S.STOPPED, S.FAILED, S.LOST, S.SUSPENDED, S.KILLED, S.PRUNED),
    "resume_saved": (S.SUSPENDED,),
    "prune": (S.SUSPENDED,),  # a halving sweep's trial left at its rung
    "archive": FINAL,
}


def ended_badly(status: str) -> bool:
    return status in ENDED_BADLY
