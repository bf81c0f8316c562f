"""Runs on a Slurm cluster: the same worker, started by sbatch on a compute node.

A compute node never opens nkd.db (SQLite's WAL does not work on NFS, Lustre or GPFS): the
worker writes only its run folder. The login side ingests each run's new events.jsonl lines by
byte offset through the store's one `apply` path (`ingest`), and asks `squeue --json` once for
every active job (`refresh`): pending with Slurm's reason, running with its node, and `lost` when
the job is gone without a final status. Control is the same request file as on this box, woken
by `scancel --batch --signal=USR1`; kill is `scancel`. Jobs are requeueable and get a warning
signal before their time limit (`--signal=B:USR2@120`): the worker then suspends, requeues its
own job, and the requeued job resumes from that state.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.backends.base import Backend, claim
from core.errors import RunError
from core.registry.settings import gpus_of
from core.registry.slurm import SlurmConfig
from core.registry.workspace import Workspace
from core.store import Store
from core.store.events import ACTIVE, FINAL, BadEvent, parse_line
from core.store.reporter import record
from core.store.states import MAY, Status
from core.store.transition import transition
from core.util.files import atomic_write_text
from core.util.project import PROJECT_ROOT

SCRIPT_NAME = "job.sbatch"
TIMEOUT_S = 30
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
         "BOOT_FAIL", "DEADLINE", "PREEMPTED", "SPECIAL_EXIT"}


def available() -> bool:
    return shutil.which("sbatch") is not None and shutil.which("squeue") is not None


def _slurm(*argv: str) -> str:
    """Run a Slurm command; its first line of complaint becomes one RunError line."""
    if not shutil.which(argv[0]):
        raise RunError(f"{argv[0]} not found: this machine has no Slurm client")
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=TIMEOUT_S,
                              check=False)
    except subprocess.TimeoutExpired:
        raise RunError(f"{argv[0]} did not answer within {TIMEOUT_S} s") from None
    if done.returncode != 0:
        why = (done.stderr.strip() or done.stdout.strip() or f"exit {done.returncode}")
        raise RunError(f"{' '.join(argv[:2])}: {why.splitlines()[0][:300]}")
    return done.stdout


# ── submitting ──────────────────────────────────────────────────────────────────────────────


def job_script(run_dir: Path, params: dict[str, Any], cfg: SlurmConfig) -> str:
    """The run's sbatch script, kept in its run folder so it can be read and resubmitted."""
    gpus = gpus_of(params)
    lines = ["#!/bin/bash", f"#SBATCH --job-name={run_dir.name}",
             f"#SBATCH --chdir={run_dir}", f"#SBATCH --output={run_dir}/slurm-%j.out",
             "#SBATCH --requeue", f"#SBATCH --signal={cfg.signal}"]
    if gpus:
        lines.append(f"#SBATCH --gres={cfg.gres}:{gpus}")
    for option, value in (("partition", cfg.partition), ("account", cfg.account),
                          ("qos", cfg.qos), ("time", cfg.time), ("cpus-per-task", cfg.cpus),
                          ("mem", cfg.mem)):
        if value is not None:
            lines.append(f"#SBATCH --{option}={value}")
    lines += [f"#SBATCH {option}" for option in cfg.extra]
    python = cfg.python or sys.executable
    lines += [
        "",
        "# set up the environment the run needs on the compute node",
        *cfg.setup,
        f"export PYTHONPATH={shlex.quote(str(PROJECT_ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}",
        f"export NKD_RUN_ID={shlex.quote(run_dir.name)} "
        f"NKD_RUN_MARK={shlex.quote(str(run_dir))}",
        "# the same worker as on the login box; a requeued job resumes from its last state",
        f"exec {shlex.quote(python)} -m core.worker {shlex.quote(str(run_dir))} "
        f"--resume-if-state >>{shlex.quote(str(run_dir / 'output.log'))} 2>&1",
        "",
    ]
    return "\n".join(lines)


def submit(store: Store, run_dir: Path, script: str, depends: list[str]) -> str:
    """Write job.sbatch, submit it (after `depends` succeeded), record the job id."""
    path = run_dir / SCRIPT_NAME
    atomic_write_text(path, script)
    argv = ["sbatch", "--parsable"]
    if depends:
        argv.append(f"--dependency=afterok:{':'.join(depends)}")
    job_id = _slurm(*argv, str(path)).strip().split(";")[0]
    record(run_dir.name, run_dir, store, "job", job_id=job_id, backend=SlurmBackend.name)
    _mark_ingested(store, run_dir)
    return job_id


def _mark_ingested(store: Store, run_dir: Path) -> None:
    """What the login side wrote itself is in the store already: ingest from here on."""
    try:
        size = (run_dir / "events.jsonl").stat().st_size
    except OSError:
        return
    with store.write() as conn:
        conn.execute("UPDATE runs SET ingested = ? WHERE id = ?", (size, run_dir.name))


# ── following ───────────────────────────────────────────────────────────────────────────────


def ingest(store: Store, ws: Workspace, run_id: str, offset: int | None) -> int:
    """Apply the complete lines written to the run's events.jsonl since `offset`; returns how
    many events were applied. A bad line is skipped (it is counted by `nkd reindex`)."""
    from core.store.apply import apply_guarded

    path = ws.run_dir(run_id) / "events.jsonl"
    start = offset or 0
    try:
        with open(path, "rb") as fh:
            fh.seek(start)
            data = fh.read()
    except OSError:
        return 0
    end = data.rfind(b"\n") + 1  # a line still being written waits for the next look
    if end == 0:
        return 0
    applied = 0
    with store.write() as conn:
        for raw in data[:end].splitlines():
            if not raw.strip():
                continue
            try:
                event = parse_line(raw)
            except BadEvent:
                continue
            applied += apply_guarded(conn, run_id, event) is None
        conn.execute("UPDATE runs SET ingested = ? WHERE id = ?", (start + end, run_id))
    return applied


_ACTIVE_FIELDS = ("id", "job_id", "status", "ingested", "requeues", "status_at")


def _active(store: Store) -> list[dict[str, Any]]:
    marks = ", ".join("?" * len(ACTIVE))
    cur = store.conn.execute(
        f"SELECT {', '.join(_ACTIVE_FIELDS)} FROM runs WHERE backend = 'slurm' "
        f"AND status IN ({marks})", ACTIVE)
    return [dict(zip(_ACTIVE_FIELDS, r, strict=True)) for r in cur.fetchall()]


REQUEUE_GRACE_S = 60.0  # how long squeue may show a requeued job's old incarnation as ended


def gone_for_good(row: dict[str, Any], state: str, now: float) -> bool:
    """Whether a job squeue shows as `state` ("gone" when not listed) has ended its run. A worker
    that requeued its own job wrote `queued` just before asking; for a moment after, squeue still
    shows the incarnation it ended (FAILED, CANCELLED) until the requeued one is PENDING, so
    that is not an end until REQUEUE_GRACE_S have passed without the requeue showing."""
    if state != "gone" and state not in ENDED:
        return False
    requeuing = row["status"] == Status.QUEUED and (row.get("requeues") or 0) > 0
    return not (requeuing and now - float(row.get("status_at") or 0.0) < REQUEUE_GRACE_S)


def jobs(job_ids: list[str]) -> dict[str, dict[str, Any]]:
    """squeue's view of these jobs (one call): id -> its JSON record."""
    if not job_ids:
        return {}
    out = _slurm("squeue", "--json", f"--jobs={','.join(job_ids)}")
    try:
        listed = json.loads(out).get("jobs", [])
    except ValueError:
        raise RunError("squeue --json: not JSON") from None
    return {str(j.get("job_id")): j for j in listed}


def refresh(store: Store, ws: Workspace) -> list[str]:
    """Ingest every active Slurm run's new events, then ask squeue about their jobs: keep
    Slurm's state, reason and node on the row, and record `lost` for a run whose job is gone
    without a final status. Returns the runs recorded lost."""
    active = _active(store)
    if not active:
        return []
    for row in active:
        ingest(store, ws, row["id"], row["ingested"])
    active = [r for r in _active(store) if r["job_id"]]
    try:
        listed = jobs([r["job_id"] for r in active])
    except RunError:
        return []  # Slurm cannot be asked now: nothing is concluded
    lost = []
    for row in active:
        job = listed.get(row["job_id"])
        if job and row["status"] == Status.QUEUED and job.get("job_state") == "PENDING" \
                and _reason(job) == "BeginTime" and _requeued(store, row["id"]) \
                and time.time() - (row.get("status_at") or 0) >= REQUEUE_SETTLE_S:
            _release_requeued(row["job_id"])
    with store.write() as conn:
        for row in active:
            job = listed.get(row["job_id"])
            if job is not None:
                conn.execute(
                    "UPDATE runs SET slurm_state = ?, slurm_reason = ?, node = coalesce(?, "
                    "node) WHERE id = ?",
                    (job.get("job_state"), _reason(job), job.get("nodes") or None, row["id"]))
    now = time.time()
    for row in active:
        job = listed.get(row["job_id"])
        state = job.get("job_state") if job else "gone"
        if gone_for_good(row, state, now):
            ingest(store, ws, row["id"], _offset(store, row["id"]))  # its last lines
            if _record_lost(store, ws, row["id"], row["job_id"], state):
                lost.append(row["id"])
    return lost


def _requeued(store: Store, run_id: str) -> bool:
    row = store.conn.execute("SELECT requeues FROM runs WHERE id = ?", (run_id,)).fetchone()
    return bool(row and row[0])


# a requeued job released sooner than this after its requeue may be allocated again before its
# old credential is cleared: slurmctld then kills it ("non-startable: Job credential revoked")
REQUEUE_SETTLE_S = 3.0


def _release_requeued(job_id: str) -> None:
    """A requeued job waits about two minutes before it is eligible; ours go on once the requeue
    has settled (REQUEUE_SETTLE_S)."""
    try:
        _slurm("scontrol", "update", f"JobId={job_id}", "StartTime=now")
    except RunError:
        pass


def _reason(job: dict[str, Any]) -> str | None:
    reason = job.get("state_reason")
    return None if reason in (None, "None") else str(reason)


def _offset(store: Store, run_id: str) -> int:
    row = store.conn.execute("SELECT ingested FROM runs WHERE id = ?", (run_id,)).fetchone()
    return int(row[0] or 0) if row else 0


def _record_lost(store: Store, ws: Workspace, run_id: str, job_id: str, state: str) -> bool:
    return transition(
        store, ws, run_id, MAY["lose"] + MAY["cancel"],
        {"type": "status", "status": Status.LOST,
         "error": f"Slurm job {job_id} ended ({state}) without a final status"},
    )


# ── control ─────────────────────────────────────────────────────────────────────────────────


def signal_worker(job_id: str, signal_name: str = "USR1") -> None:
    """Signal the batch step's process: the exec'd worker."""
    _slurm("scancel", "--batch", f"--signal={signal_name}", job_id)


def cancel(job_id: str) -> None:
    _slurm("scancel", job_id)


def hold(job_id: str, on: bool) -> None:
    _slurm("scontrol", "hold" if on else "release", job_id)


def _cancel_waiting(job_id: str | None) -> bool:
    """Cancel a job that may still wait in Slurm's queue; False when there is none (no job,
    or it ended already, as a suspended run's job usually has)."""
    if not job_id:
        return False
    try:
        cancel(job_id)
    except RunError:
        return False
    return True


def _job_script(run_dir: Path) -> str:
    """The run's job.sbatch, to submit again."""
    script = run_dir / SCRIPT_NAME
    try:
        return script.read_text(encoding="utf-8")
    except OSError as exc:
        raise RunError(f"{script}: cannot be read ({exc.strerror})") from None


def requeue_self(held: bool = False) -> bool:
    """From inside a job: put it back in Slurm's queue (the login side's `refresh` makes it
    eligible at once), or there held until released. False outside a job or where Slurm
    refuses."""
    job_id = os.environ.get("SLURM_JOB_ID")
    if not job_id:
        return False
    try:
        # ends this job's processes, this one too
        _slurm("scontrol", "requeuehold" if held else "requeue", job_id)
    except RunError as exc:
        print(f"nkd: requeue of job {job_id} failed: {exc}", flush=True)
        return False
    return True


# ── the backend ─────────────────────────────────────────────────────────────────────────────


class SlurmBackend(Backend):
    name = "slurm"
    writes_store = False  # a compute node writes only its run folder; `sync` ingests it
    checked_by_pid = False  # followed through squeue
    resumes = MAY["restart"]  # any ended run is submitted again and resumes from its state

    def check_launch(self, backends: dict[str, Any], where: str) -> None:
        if self.name not in backends:
            raise RunError(f"{where}: backend 'slurm' needs a [backends.slurm] table")
        if not available():
            raise RunError(f"{where.rpartition(': ')[2]}: sbatch and squeue are not on this "
                           f"machine's PATH; run it here without `--on slurm`, or from the "
                           f"cluster's login node")

    def dependencies(self, store: Store, after: list[str]) -> list[str]:
        """The jobs of the runs in `after` (`--dependency=afterok:`); a finished one is done."""
        depends = []
        for parent in after:
            row = store.get_run(parent)
            if row is None:
                raise RunError(f"--after: no run '{parent}' in {store.path}")
            if row["status"] == Status.FINISHED:
                continue
            if row["status"] in FINAL:
                raise RunError(f"--after: run '{parent}' ended {row['status']}; nothing to "
                               f"wait for")
            if row.get("backend") != self.name or not row.get("job_id"):
                raise RunError(f"--after: run '{parent}' runs on this box, not on Slurm; a "
                               f"Slurm job can wait only for Slurm jobs")
            depends.append(row["job_id"])
        return depends

    @property
    def starts_queued(self) -> bool:
        return True  # pending in Slurm's queue until a node takes it

    def start(self, store: Store, run_dir: Path, gpus: list[Any] | None, depends: list[str],
              params: dict[str, Any], backends: dict[str, Any]) -> tuple[int | None, str | None]:
        job_id = submit(store, run_dir, job_script(run_dir, params, backends[self.name]),
                        depends)
        return None, f"Slurm job {job_id}"

    def wake(self, row: dict[str, Any], hard: bool = False) -> None:
        signal_worker(row["job_id"], "TERM" if hard else "USR1")

    def control_waiting(self, store: Store, ws: Workspace, row: dict[str, Any],
                        action: str) -> str:
        """A pending job is held (pause), released (resume) or cancelled (stop)."""
        run_id, job = row["id"], row.get("job_id")
        if not job:
            raise RunError(f"run '{run_id}' has no Slurm job yet")
        if action == "stop":
            cancel(job)
            transition(store, ws, run_id, MAY["cancel"], {
                "type": "status", "status": Status.CANCELLED,
                "error": f"Slurm job {job} cancelled"})
            return f"{run_id}: pending Slurm job {job} cancelled"
        if action in ("pause", "resume"):
            hold(job, action == "pause")
            done = "held" if action == "pause" else "released"
            return f"{run_id}: pending Slurm job {job} {done}"
        raise RunError(f"run '{run_id}' is pending in Slurm (job {job}); it can be held "
                       f"(pause), released (resume) or cancelled (stop)")

    def hard_stop(self, store: Store, ws: Workspace, row: dict[str, Any], status: str,
                  grace: float, ask_stop: Callable[[], None],
                  wait: Callable[[float], bool]) -> str:
        """`scancel`: SIGTERM to every process of the job, then SIGKILL (Slurm's own grace)."""
        job = row.get("job_id")
        if not job:
            raise RunError(f"run '{row['id']}' has no Slurm job yet")
        cancel(job)
        final = Status.CANCELLED if status in MAY["cancel"] else Status.KILLED
        transition(store, ws, row["id"], MAY["kill"], {
            "type": "status", "status": final, "error": f"Slurm job {job} cancelled"})
        return f"{row['id']}: Slurm job {job} cancelled"

    def start_again(self, store: Store, ws: Workspace, row: dict[str, Any]) -> str:
        """Submit the ended run's job.sbatch again: it resumes from its last state."""
        run_id = row["id"]
        text = _job_script(ws.run_dir(run_id))
        claim(store, ws, run_id, {"type": "status", "status": Status.QUEUED, "pid": None,
                                  "pid_start": None, "pid_ticks": None, "resume": 1})
        _cancel_waiting(row.get("job_id"))  # a halving trial's job may still wait held
        job = submit(store, ws.run_dir(run_id), text, [])
        return f"submitted again as Slurm job {job}; it resumes from its last state"

    def rung_decided(self, store: Store, ws: Workspace, row: dict[str, Any],
                     promoted: bool) -> str:
        """The trial's job waits held in Slurm's queue since its rung (its worker requeued it
        so): released when promoted, to resume from the state saved there (`refresh` lets it
        start at once), cancelled when pruned. A job that is gone (Slurm refused the requeue)
        is submitted again."""
        job, run_dir = row.get("job_id"), ws.run_dir(row["id"])
        if not promoted:
            return f"Slurm job {job} cancelled" if _cancel_waiting(job) else ""
        _mark_ingested(store, run_dir)  # the promotion was written here, and nothing since
        if job:
            try:
                hold(job, False)
                return f"Slurm job {job} released"
            except RunError:
                pass  # not held there: the job ended
        return f"submitted again as Slurm job {submit(store, run_dir, _job_script(run_dir), [])}"

    def alive(self, row: dict[str, Any]) -> bool:
        return True  # `sync` asks squeue and records `lost` for a job gone without its end

    def sync(self, store: Store, ws: Workspace) -> list[str]:
        return refresh(store, ws)

    def describe(self, row: dict[str, Any]) -> str:
        job = row.get("job_id") or "?"
        return f"slurm {job}" + (f"@{row['node']}" if row.get("node") else "")

    def waiting_reason(self, row: dict[str, Any]) -> str | None:
        return row.get("slurm_reason") or None


SLURM = SlurmBackend()
