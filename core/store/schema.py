"""The store's tables and their migrations, one function per schema version."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported when a migration runs: it costs ~100 ms, the TUI starts without it
    import sqlite_utils
# the listing's covering index (see LIST_COLUMNS in db.py)
LIST_INDEX = (
    "created_at DESC", "id", "experiment", "status", "epoch", "epochs_total", "best_val_loss",
    "sdr", "accuracy", "started_at", "ended_at",
)


def _v1(db: sqlite_utils.Database) -> None:
    db["runs"].create(
        {
            "id": str,
            "experiment": str,
            "recipe": str,
            "status": str,
            "params": str,
            "run_dir": str,
            "seed": int,
            "pid": int,
            "pid_start": float,
            "host": str,
            "created_at": float,
            "started_at": float,
            "ended_at": float,
            "heartbeat_at": float,
            "exit_code": int,
            "error": str,
            "epoch": int,
            "epochs_total": int,
            "best_epoch": int,
            "best_val_loss": float,
            "best_train_loss": float,
            "accuracy": float,
            "sdr": float,
        },
        pk="id",
    )
    db["epochs"].create(
        {
            "run": str,
            "epoch": int,
            "train_loss": float,
            "val_loss": float,
            "lr": float,
            "extra": str,
            "seconds": float,
            "at": float,
        },
        pk=("run", "epoch"),
    )
    db["metrics"].create(
        {
            "id": int,
            "run": str,
            "name": str,
            "value": float,
            "stem": str,
            "track": str,
            "split": str,
            "epoch": int,
            "at": float,
        },
        pk="id",
    )
    db["checkpoints"].create(
        {
            "id": str,
            "run": str,
            "path": str,
            "role": str,
            "epoch": int,
            "value": float,
            "sha256": str,
            "at": float,
        },
        pk="id",
    )
    db["lineage"].create(
        {"child": str, "parent": str, "relation": str, "weight": float},
        pk=("child", "parent", "relation"),
    )
    db["runs"].create_index(["experiment", "created_at"])
    db["runs"].create_index(["status"])
    db["metrics"].create_index(["run", "name"])
    db["checkpoints"].create_index(["run"])
    db["lineage"].create_index(["parent"])


def _v2(db: sqlite_utils.Database) -> None:
    # v2: which device a run used, and which definition a metric value follows (e.g. SDR
    # "bsseval_v4_images" vs "sources"), since different definitions give different numbers.
    db["runs"].add_column("device", str)
    db["metrics"].add_column("definition", str)
    # listing every run reads only this index, never the wide rows with their params
    db.execute(f"CREATE INDEX idx_runs_list ON runs ({', '.join(LIST_INDEX)})")


def _v3(db: sqlite_utils.Database) -> None:
    # v3: the kernel's start ticks of a run's process (liveness that no clock jump can fool),
    # when the status last changed (a restarted run's grace period before its worker reports),
    # and one row per metric key, so replaying an event (reindex, restart) never duplicates it.
    db["runs"].add_column("pid_ticks", int)
    db["runs"].add_column("status_at", float)
    db.execute(
        "DELETE FROM metrics WHERE id NOT IN (SELECT max(id) FROM metrics GROUP BY run, name, "
        "coalesce(stem, ''), coalesce(track, ''), coalesce(split, ''), coalesce(epoch, -1), "
        "coalesce(definition, ''))"
    )
    db.execute(f"CREATE UNIQUE INDEX idx_metrics_key ON metrics ({', '.join(METRIC_KEY)})")


# what makes a metric row unique: a replayed event replaces its row instead of adding one
METRIC_KEY = (
    "run", "name", "coalesce(stem, '')", "coalesce(track, '')", "coalesce(split, '')",
    "coalesce(epoch, -1)", "coalesce(definition, '')",
)
def _v4(db: sqlite_utils.Database) -> None:
    # v4: the queue. What a run needs (gpus, gpu_memory in MiB), its priority, the runs it waits
    # for (JSON list of ids), its sweep, the GPUs it holds (CUDA_VISIBLE_DEVICES; a lease while
    # the run is active), whether the queue starts it with --resume, and why it waits.
    for column, kind in (("needs_gpus", int), ("gpu_memory", float), ("priority", int),
                         ("after", str), ("sweep", str), ("gpus", str), ("resume", int),
                         ("queued_at", float)):
        db["runs"].add_column(column, kind)
    db["runs"].create_index(["status", "priority"])


def _v5(db: sqlite_utils.Database) -> None:
    # v5: Slurm. Where a run executes (backend), its job, what squeue last said of it (state,
    # reason, node: display fields, refreshed by the login side), how often it was requeued, and
    # how far its events.jsonl has been ingested (a byte offset: compute nodes never open nkd.db).
    for column, kind in (("backend", str), ("job_id", str), ("slurm_state", str),
                         ("slurm_reason", str), ("node", str), ("requeues", int),
                         ("ingested", int)):
        db["runs"].add_column(column, kind)


def _v6(db: sqlite_utils.Database) -> None:
    # v6: where a run is inside its epoch (the last step-progress event: step of steps, when),
    # for the ETA; and what the run's worker cost: peak resident memory (MiB) and CPU seconds.
    # And the test split's mean SDR beside the validation one (never mixed in one column), and
    # where each metric's gain correction was fitted ("val:<source>", or "none").
    for column, kind in (("step", int), ("steps", int), ("step_at", float),
                         ("peak_rss_mb", float), ("cpu_s", float), ("test_sdr", float)):
        db["runs"].add_column(column, kind)
    db["metrics"].add_column("gains", str)


def _v7(db: sqlite_utils.Database) -> None:
    # v7: what the researcher says of a run after the fact: its tags (a JSON list), a note, and
    # whether it is archived (hidden from listings, never deleted).
    for column, kind in (("tags", str), ("note", str), ("archived", int)):
        db["runs"].add_column(column, kind)


def _v8(db: sqlite_utils.Database) -> None:
    # v8: what a run selects its best epoch by and that epoch's value (best_epoch is the epoch
    # whose weights are in its best checkpoint); the values its recipe took from the key
    # schema's defaults (JSON); the inference settings it used with where each came from (JSON
    # {key: [value, origin]}); and why it stopped early. Runs recorded before select_by by
    # their lowest validation loss, as the store chose then.
    for column, kind in (("select_by", str), ("best_value", float), ("defaults", str),
                         ("settings_used", str), ("early_stop", str)):
        db["runs"].add_column(column, kind)
    db.execute("UPDATE runs SET best_value = coalesce(best_val_loss, best_train_loss)")


def _v9(db: sqlite_utils.Database) -> None:
    # v9: the ends a worker could not write to its run's events.jsonl (disk full, read-only
    # folder). The run's row says `lost` with the reason; this table keeps what it meant to
    # record, so `nkd reindex`, which rebuilds every other table from the files, keeps it too.
    db["unrecorded_ends"].create({"run": str, "status": str, "error": str, "t": float},
                                 pk="run")
    # and what makes a score mean less than it looks (a split of fewer clips than classes, a
    # class absent from it): on the metric, and on the run for the score its row shows
    db["metrics"].add_column("caveat", str)
    db["runs"].add_column("caveat", str)


def _v10(db: sqlite_utils.Database) -> None:
    # v10: sizes on disk. Each checkpoint's bytes (from its event) and when `nkd gc` deleted it;
    # a run's live checkpoint bytes kept as the sum of those, and its folder's size at its end,
    # so listing sizes never walks the disk.
    db["checkpoints"].add_column("bytes", int)
    db["checkpoints"].add_column("deleted_at", float)
    db["runs"].add_column("checkpoint_bytes", int)
    db["runs"].add_column("folder_bytes", int)


def _v11(db: sqlite_utils.Database) -> None:
    # v11: who deleted a checkpoint: `nkd gc`, or the run's own `keep_checkpoints` dropping an
    # epoch out of its K best. And an index that covers what the TUI's tree sums per experiment
    # (live runs, best score, bytes on disk): each poll reads it alone, never a run's wide row.
    db["checkpoints"].add_column("deleted_by", str)
    db.execute("UPDATE checkpoints SET deleted_by = 'nkd gc' WHERE deleted_at IS NOT NULL")
    # the derived caches (prepared audio, features) a run used: their bytes, and a key naming
    # that set of entries, shared by the runs that used the same ones (its share: bytes / runs)
    db["runs"].add_column("cache_bytes", int)
    db["runs"].add_column("cache_key", str)
    db.execute(f"CREATE INDEX idx_runs_tree ON runs ({', '.join(TREE_INDEX)})")


TREE_INDEX = ("experiment", "status", "sdr", "accuracy", "checkpoint_bytes", "folder_bytes")
SCHEMA_VERSION = 11
MIGRATIONS: dict[int, Callable[[sqlite_utils.Database], None]] = {
    1: _v1, 2: _v2, 3: _v3, 4: _v4, 5: _v5, 6: _v6, 7: _v7, 8: _v8, 9: _v9, 10: _v10, 11: _v11,
}


