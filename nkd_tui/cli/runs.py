"""`nkd ps`, `nkd show` and `nkd logs`: what runs did, read from the store and run folders."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from core.backends import backend_named
from core.backends.base import Backend
from core.errors import NkdError
from core.store import FINAL, FULL_COLUMNS
from core.store.states import MAY, PROGRESSING
from core.util.text import log_line, visible
from nkd_tui.cli.context import open_workspace, sync_slurm, text_table
from nkd_tui.format import (
    CAVEAT_MARK,
    best_text,
    duration,
    epochs_text,
    fmt_bytes,
    fmt_num,
    fmt_time,
    run_bytes,
    score_cell,
    status_text,
)


def _references(run_dir: Path) -> list[dict[str, Any]]:
    """The runs this run's references resolved to, as its events.jsonl recorded them."""
    from core.store.events import EventLog

    path = run_dir / "events.jsonl"
    if not path.is_file():
        return []
    return [e for e in EventLog(path) if e.get("type") == "reference"
            and all(isinstance(e.get(k), str) for k in ("key", "ref", "run"))]


def _print_metrics(metrics: list[dict[str, Any]]) -> None:
    """Summary values in a table with one column per split (val and test side by side, never
    one for the other), where their gain correction came from, then the count of per-track
    values (all of them in `nkd show --json`)."""
    splits = sorted({m["split"] or "-" for m in metrics if not m["track"]},
                    key=lambda s: ("-", "train", "val", "test").index(s)
                    if s in ("-", "train", "val", "test") else 9)
    table: dict[tuple[str, str], dict[str, float]] = {}
    gains: dict[str, str] = {}
    for m in metrics:
        if m["track"]:
            continue
        table.setdefault((m["name"], m["stem"] or ""), {})[m["split"] or "-"] = m["value"]
        if m.get("gains") and m["gains"] != "none":
            gains[m["split"] or "-"] = m["gains"]
    say("metrics" + "".join(f"{s:>24}" if i == 0 else f"{s:>12}"
                              for i, s in enumerate(splits)))
    for (name, stem), values in table.items():
        label = f"{name} {stem}".strip()
        say(f"  {label:<28}" + "".join(f"{fmt_num(values.get(s)):>12}" for s in splits))
    for split, source in sorted(gains.items()):
        fitted = " (in-sample: they do not compare with test)" if split == "val" and \
            source.startswith("val:") else ""
        say(f"  gain correction of the {split} values fitted on {source}{fitted}")
    for split, caveat in sorted({(m["split"] or "-", m["caveat"]) for m in metrics
                                 if m.get("caveat") and not m["track"]}):
        say(f"  {split}: {caveat}")
    per_track = sum(1 for m in metrics if m["track"])
    if per_track:
        say(f"  and {per_track} per-track values (nkd show --json)")


def cmd_ps(args: argparse.Namespace) -> int:
    from core.runs.status import reconcile

    ws, store = open_workspace(args)
    reconcile(store, ws)
    sync_slurm(store, ws)
    from core.runs.annotate import matches, tags_of

    rows = list(store.list_runs(  # each row made a dict once: the table and the caveats read it
        args.experiment, limit=None if args.all or args.json or args.sweep or args.search else 50,
        columns=FULL_COLUMNS, sweep=args.sweep, archived=None if args.archived else False,
    ))
    if args.search:
        rows = [r for r in rows if matches(r, args.search)]
    if args.json:
        keys = (
            "id",
            "experiment",
            "recipe",
            "status",
            "epoch",
            "epochs_total",
            "best_epoch",
            "best_val_loss",
            "best_train_loss",
            "accuracy",
            "sdr",
            "test_sdr",
            "caveat",
            "checkpoint_bytes",
            "folder_bytes",
            "pid",
            "started_at",
            "ended_at",
            "device",
            "gpus",
            "sweep",
            "backend",
            "job_id",
            "node",
            "slurm_state",
            "slurm_reason",
            "requeues",
            "error",
            "note",
        )
        shares = store.cache_shares()
        print(json.dumps([{**{k: r[k] for k in keys}, "cache_share_bytes": shares.get(
            r["id"], (None,))[0], "tags": tags_of(r), "archived": bool(r["archived"])}
            for r in rows], indent=2))
        return 0
    backend, waiting = cache(backend_named), MAY["cancel"]
    table = [
        [
            ("⌂ " if r["archived"] else "") + r["id"],
            status_text(r["status"]) + (_waiting_reason(r, backend(r["backend"]))
                                        if r["status"] in waiting else ""),
            epochs_text(r["epoch"], r["epochs_total"]),
            fmt_num(r["best_val_loss"]),
            score_cell(r["accuracy"], r["caveat"]),
            score_cell(r["sdr"], r["caveat"]),
            fmt_num(r["test_sdr"]),
            fmt_time(r["started_at"]),
            duration(r),
            fmt_bytes(run_bytes(r)),
            r["gpus"] or "-",
            backend(r["backend"]).describe(r),
            " ".join(f"#{t}" for t in tags_of(r)) or "-",
        ]
        for r in rows
    ]
    header = ["RUN", "STATUS", "EPOCH", "BEST VAL", "ACC", "SDR", "TEST SDR", "STARTED", "TIME",
              "SIZE", "GPU", "WHERE", "TAGS"]
    print(text_table(table, header) if table else "no runs yet")
    for r in rows:
        if r["caveat"] and (r["accuracy"] is not None or r["sdr"] is not None):
            print(visible(f"{CAVEAT_MARK} {r['id']}: {r['caveat']}"))
    from core.backends.space import low_space

    low = low_space(ws, store)
    if low:
        print(f"nkd: warning: {low}", file=sys.stderr)
    return 0


def _waiting_reason(r: dict[str, Any], backend: Backend) -> str:
    """` (Priority)`: why a run waiting in its backend's own queue has not started."""
    reason = backend.waiting_reason(r)
    return f" ({reason})" if reason else ""


def cmd_show(args: argparse.Namespace) -> int:
    from core.runs.status import current_status, resolve_run

    ws, store = open_workspace(args)
    run_id = resolve_run(store, args.run)
    row = store.get_run(run_id)
    assert row is not None
    row["status"] = current_status(store, ws, row)
    epochs = store.epochs(run_id)
    metrics = store.metrics(run_id)
    checkpoints = store.checkpoints(run_id)
    settings = _settings(row)
    if args.json:
        out = {k: row[k] for k in row if k not in ("params",)}
        out["params"] = row["params"]
        out["settings"] = {k: {"value": v, "from": o} for k, (v, o) in settings.items()}
        out["epochs"] = [
            {k: e[k] for k in ("epoch", "train_loss", "val_loss", "lr")} for e in epochs
        ]
        out["metrics"] = metrics
        out["checkpoints"] = checkpoints
        out["cache_share_bytes"] = store.cache_shares(run_id).get(run_id, (None,))[0]
        from core.runs import provenance

        out["provenance"] = provenance.read(Path(row["run_dir"] or ""))
        print(json.dumps(out, indent=2, default=str))
        return 0
    say(f"run         {run_id}")
    say(f"experiment  {row['experiment']}  ({row['recipe']})")
    say(
        f"status      {status_text(row['status'])}"
        + (f"  — {row['error']}" if row.get("error") else "")
    )
    say(
        f"epochs      {epochs_text(row['epoch'], row['epochs_total'])}  "
        f"{best_text(row) or 'best epoch -'}  val loss {fmt_num(row['best_val_loss'])}  "
        f"train {fmt_num(row['best_train_loss'])}"
    )
    if row.get("early_stop"):
        say(f"early stop  {row['early_stop']}")
    say(
        f"started     {fmt_time(row['started_at'])}  time {duration(row)}  pid {row['pid']}"
        f"  host {row['host']}  device {row.get('device') or '-'}"
    )
    if row.get("steps") and row.get("status") in PROGRESSING:
        say(f"progress    step {row['step']}/{row['steps']} of epoch {(row['epoch'] or 0) + 1}")
    if row.get("peak_rss_mb") is not None:
        say(f"cost        peak memory {row['peak_rss_mb']:.0f} MiB  CPU {row['cpu_s']:.1f} s")
    say(f"folder      {row['run_dir']}")
    if run_bytes(row) is not None:
        gone = sum(1 for c in checkpoints if c.get("deleted_at"))
        share = store.cache_shares(row["id"]).get(row["id"])
        say(f"disk        {fmt_bytes(run_bytes(row))}: checkpoints "
            f"{fmt_bytes(row.get('checkpoint_bytes'))} ({len(checkpoints) - gone} files"
            + (f", {gone} deleted" if gone else "") + "), folder "
            + fmt_bytes(row.get("folder_bytes"))
            + (f"; its share of the caches {fmt_bytes(share[0])} (of {fmt_bytes(share[1])} "
               f"of prepared audio and features used by {share[2]} run(s))" if share else ""))
    from core.runs.annotate import tags_of

    if tags_of(row) or row.get("archived"):
        say(f"tags        {' '.join('#' + t for t in tags_of(row)) or '-'}"
              + ("  (archived: nkd archive --undo shows it again)" if row.get("archived") else ""))
    if row.get("note"):
        say(f"note        {row['note']}")
    for ref in _references(Path(row["run_dir"] or "")):
        say(f"reference   {ref['key']} {ref['ref']} -> run {ref['run']}")
    from core.runs import provenance

    made = provenance.read(Path(row["run_dir"] or ""))
    if made is not None:
        for line in provenance.lines(made):
            say(line)
    if settings:
        _print_settings(settings)
    if metrics:
        _print_metrics(metrics)
    if checkpoints:
        say("checkpoints")
        for c in checkpoints:
            gone = (f"  (deleted by {c['deleted_by']}; sha256 "
                    f"{(c.get('sha256') or '-')[:12]})") if c.get("deleted_at") else ""
            say(
                f"  {c['role'] or '-':<6} epoch {c['epoch'] if c['epoch'] is not None else '-'}"
                f"  {fmt_bytes(c.get('bytes')):>5}  {c['path']}{gone}"
            )
    return 0


def _settings(row: dict[str, Any]) -> dict[str, tuple[Any, str]]:
    """key -> (value, origin): the resolved settings saved in the run's config.json at launch,
    with what the run found as it ran (a checkpoint's inference settings) over them."""
    from core.registry.settings import of_config
    from core.store.apply import settings_of
    from core.util.files import read_json

    try:
        config = read_json(Path(row["run_dir"] or "") / "config.json")
    except (OSError, ValueError):
        return settings_of(row)
    values, origin = of_config(config)
    out = {k: (v, origin.get(k, "experiment")) for k, v in values.items()
           if k not in ("description", "group", "reported", "tags")}
    out |= {k: v for k, v in settings_of(row).items() if v[1] not in ("experiment", "default")}
    return dict(sorted(out.items()))


def _print_settings(settings: dict[str, tuple[Any, str]]) -> None:
    """Every setting the run used, `(default)`, `([defaults])` or `(checkpoint)` after those it
    did not take from the experiment itself."""
    say("settings")
    for key, (value, origin) in settings.items():
        shown = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
        where = "" if origin == "experiment" else f"  ({origin})"
        say(f"  {key:<20} {shown[:70]}{where}")


def _log_text(text: str) -> str:
    """A log as `nkd logs` shows it: every line without the script's escape sequences."""
    return "\n".join(log_line(line) for line in text.split("\n"))


def say(text: str) -> None:
    """A line of `nkd show`: what people and scripts wrote in it (a note, a tag, a metric name,
    an error) shown with its control characters made visible, never sent to the terminal."""
    print(visible(text))


def cmd_logs(args: argparse.Namespace) -> int:
    from core.runs.status import resolve_run

    ws, store = open_workspace(args)
    run_id = resolve_run(store, args.run)
    log = ws.run_dir(run_id) / "output.log"
    if not log.is_file():
        raise NkdError(f"run '{run_id}': no output.log in {log.parent}")
    shown = (lambda text: text) if args.raw else _log_text
    with open(log, encoding="utf-8", errors="replace") as fh:
        sys.stdout.write(shown(fh.read()))
        sys.stdout.flush()
        if not args.follow:
            return 0
        try:
            while True:
                chunk = shown(fh.read())
                if chunk:
                    sys.stdout.write(chunk)
                    sys.stdout.flush()
                    continue
                row = store.get_run(run_id)
                if row is None or row["status"] in FINAL:
                    sys.stdout.write(fh.read())
                    return 0
                time.sleep(0.3)
        except KeyboardInterrupt:
            return 0


def add_parsers(add: Callable[..., argparse.ArgumentParser], sub: Any) -> None:
    p = add(sub, "ps", help="list runs")
    p.add_argument("--json", action="store_true")
    p.add_argument("--all", "-a", action="store_true", help="all runs, not the latest 50")
    p.add_argument("--experiment", "-e")
    p.add_argument("--sweep", help="the runs of one sweep")
    p.add_argument("--archived", action="store_true", help="archived runs too (marked ⌂)")
    p.add_argument("--search", "-s", metavar="TEXT",
                   help="runs whose id, tags or note contain TEXT (#tag: that tag exactly)")
    p.set_defaults(func=cmd_ps)

    p = add(sub, "show", help="one run: status, best values, metrics, checkpoints")
    p.add_argument("run", help="run id, unique prefix, or experiment (its latest run)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)

    p = add(sub, "logs", help="a run's output log")
    p.add_argument("run")
    p.add_argument("--follow", "-f", action="store_true")
    p.add_argument("--raw", action="store_true",
                   help="the log's bytes as written, escape sequences included")
    p.set_defaults(func=cmd_logs)
