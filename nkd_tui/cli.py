"""The `nkd` command line: run experiments headless, list and follow runs, control them."""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_REFUSED, EXIT_RUN_FAILED, NkdError
from core.registry import KEYS, Registry, load_registry
from core.store import FINAL, FULL_COLUMNS, Store
from core.store.recover import open_store
from core.workspace import Workspace
from nkd_tui.format import duration, fmt_num, fmt_time, status_text


def _registry_path(args: argparse.Namespace) -> Path:
    return Path(args.registry or os.environ.get("NKD_REGISTRY") or "experiments.toml")


def _open(args: argparse.Namespace) -> tuple[Registry, Workspace, Store]:
    registry = load_registry(_registry_path(args))
    ws = Workspace.at(registry.path)
    return registry, ws, open_store(ws)


def _open_store(args: argparse.Namespace) -> tuple[Workspace, Store]:
    """The store beside the registry file; the registry itself need not be valid to read runs."""
    path = _registry_path(args)
    if not path.is_file():
        raise NkdError(f"{path}: registry file not found")
    ws = Workspace.at(path)
    return ws, open_store(ws)


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


# ── commands ────────────────────────────────────────────────────────────────────────────────


def cmd_check(args: argparse.Namespace) -> int:
    registry = load_registry(_registry_path(args))
    n = len(registry.sweeps)
    sweeps = f"{n} sweep{'s' if n != 1 else ''}, " if n else ""
    print(
        f"{registry.path}: {len(registry.experiments)} experiments, "
        f"{len(registry.data)} data sources, {sweeps}all valid"
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    registry, _ws, store = _open(args)
    rows = []
    for group, names in sorted(registry.groups().items()):
        for name in names:
            exp = registry.experiments[name]
            latest = store.latest_run(name)
            parents = [str(r) for r in exp.references.values()]
            parents += [f"{s}×{s.weight:g}" for s in exp.sources]
            reported = exp.reported.get("sdr_db", exp.reported.get("accuracy"))
            rows.append(
                [
                    group,
                    name,
                    exp.recipe or "command",
                    ", ".join(parents) or "-",
                    "-" if reported is None else str(reported),
                    latest["status"] if latest else "-",
                ]
            )
    if args.json:
        keys = ["group", "experiment", "recipe", "parents", "reported", "latest_status"]
        print(json.dumps([dict(zip(keys, r, strict=True)) for r in rows], indent=2))
    else:
        header = ["GROUP", "EXPERIMENT", "RECIPE", "FROM", "REPORTED", "LATEST"]
        print(_table(rows, header))
    return 0


def cmd_keys(_args: argparse.Namespace) -> int:
    from core.registry import REQUIRED

    for key, spec in KEYS.items():
        choices = f" ({'/'.join(spec.choices)})" if spec.choices else ""
        limits = f" [{spec.range_text()}]" if spec.range_text() else ""
        needed = [r for r, keys in REQUIRED.items() if key in keys]
        needed_by = f"; required by {', '.join(needed)}" if needed else ""
        print(f"{key:22} {spec.kind:10} {spec.help}{choices}{limits}{needed_by}")
    return 0


SLURM_SYNC_S = 1.0  # how often a foreground Slurm run is ingested and asked about


def _follow_run(store: Store, ws: Workspace, run_id: str) -> int:
    """Show per-epoch progress until the run ends; Ctrl-C stops it, a second Ctrl-C kills it."""
    from core.actions import kill, send
    from core.progress import progress_text
    from core.status import current_status

    tty = sys.stdout.isatty()
    shown = 0
    interrupts = 0
    synced = 0.0
    stepped = None
    while True:
        try:
            row = store.get_run(run_id)
            assert row is not None
            if row.get("backend") == "slurm" and time.monotonic() - synced >= SLURM_SYNC_S:
                synced = time.monotonic()
                _sync_slurm(store, ws)  # a compute node writes only its folder: ingest it
                row = store.get_run(run_id) or row
            epochs = store.epochs(run_id)
            for ep in epochs[shown:]:
                line = _epoch_line(ep, row.get("epochs_total"))
                print(("\r\033[K" if tty else "") + line, end="" if tty else "\n", flush=True)
            shown = len(epochs)
            if tty and row.get("step_at") != stepped:  # inside an epoch: step k/n and the ETA
                stepped = row.get("step_at")
                text = progress_text(store.conn, run_id, time.time())
                if text:
                    print(f"\r\033[K{text}", end="", flush=True)
            status = current_status(store, ws, row)
            if status in FINAL:
                if tty:
                    print()
                code = _report_end(store, run_id)
                return EXIT_INTERRUPTED if interrupts else code
            time.sleep(0.3)
        except KeyboardInterrupt:
            interrupts += 1
            if interrupts == 1:
                print("\nstopping the run (Ctrl-C again to kill it) ...", flush=True)
                try:
                    send(store, ws, run_id, "stop")
                except NkdError as exc:
                    print(f"nkd: {exc}", file=sys.stderr)
            else:
                print(kill(store, ws, run_id, grace=0), flush=True)


def _references(run_dir: Path) -> list[dict[str, Any]]:
    """The runs this run's references resolved to, as its events.jsonl recorded them."""
    from core.events import EventLog

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
    print("metrics" + "".join(f"{s:>24}" if i == 0 else f"{s:>12}"
                              for i, s in enumerate(splits)))
    for (name, stem), values in table.items():
        label = f"{name} {stem}".strip()
        print(f"  {label:<28}" + "".join(f"{fmt_num(values.get(s)):>12}" for s in splits))
    for split, source in sorted(gains.items()):
        print(f"  gain correction of the {split} values fitted on {source}")
    per_track = sum(1 for m in metrics if m["track"])
    if per_track:
        print(f"  and {per_track} per-track values (nkd show --json)")


def _epoch_line(ep: dict[str, Any], total: int | None) -> str:
    n = ep["epoch"]
    bar = ""
    if total:
        filled = int(20 * min(n, total) / total)
        bar = f"[{'#' * filled}{'.' * (20 - filled)}] "
    parts = [f"epoch {n}{f'/{total}' if total else ''}", bar.strip()]
    parts.append(f"train {fmt_num(ep['train_loss'])}")
    if ep["val_loss"] is not None:
        parts.append(f"val {fmt_num(ep['val_loss'])}")
    if ep["lr"] is not None:
        parts.append(f"lr {ep['lr']:.2g}")
    if ep.get("seconds"):
        parts.append(f"{ep['seconds']:.1f} s/epoch")
    return "  ".join(p for p in parts if p)


HEADLINE = {("accuracy", None), ("macro_f1", None), ("sdr", "mean")}  # said when a run ends


def _report_end(store: Store, run_id: str) -> int:
    row = store.get_run(run_id)
    assert row is not None
    best = ""
    if row["best_epoch"] is not None:
        best = f", best epoch {row['best_epoch']} (val {fmt_num(row['best_val_loss'])})"
    error = f": {row['error']}" if row.get("error") else ""
    print(f"{run_id}: {row['status']}{best}{error}")
    headline = [m for m in store.metrics(run_id) if not m["track"] and m["epoch"] is None
                and ((m["name"], m["stem"]) in HEADLINE)]
    if headline:  # an evaluation has no epochs to show: its scores, by split
        print("  " + ", ".join(f"{m['name']}{' ' + m['stem'] if m['stem'] else ''} "
                               f"{fmt_num(m['value'])} ({m['split'] or '-'})" for m in headline))
    return EXIT_OK if row["status"] in ("finished", "stopped", "suspended") else EXIT_RUN_FAILED


def cmd_ps(args: argparse.Namespace) -> int:
    from core.status import reconcile

    ws, store = _open_store(args)
    reconcile(store, ws)
    _sync_slurm(store, ws)
    from core.annotate import matches, tags_of

    rows = store.list_runs(
        args.experiment, limit=None if args.all or args.json or args.sweep or args.search else 50,
        columns=FULL_COLUMNS, sweep=args.sweep, archived=None if args.archived else False,
    )
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
        print(json.dumps([{**{k: r[k] for k in keys}, "tags": tags_of(r),
                           "archived": bool(r["archived"])} for r in rows], indent=2))
        return 0
    table = [
        [
            ("⌂ " if r["archived"] else "") + r["id"],
            status_text(r["status"]) + (f" ({r['slurm_reason']})"
                                        if r["status"] == "queued" and r["slurm_reason"] else ""),
            f"{r['epoch'] or 0}/{r['epochs_total'] or '?'}",
            fmt_num(r["best_val_loss"]),
            fmt_num(r["accuracy"]),
            fmt_num(r["sdr"]),
            fmt_num(r["test_sdr"]),
            fmt_time(r["started_at"]),
            duration(r),
            r["gpus"] or "-",
            f"slurm {r['job_id']}" + (f"@{r['node']}" if r["node"] else "")
            if r["backend"] == "slurm" else "local",
            " ".join(f"#{t}" for t in tags_of(r)) or "-",
        ]
        for r in rows
    ]
    header = ["RUN", "STATUS", "EPOCH", "BEST VAL", "ACC", "SDR", "TEST SDR", "STARTED", "TIME",
              "GPU", "WHERE", "TAGS"]
    print(_table(table, header) if table else "no runs yet")
    return 0


def _sync_slurm(store: Store, ws: Workspace) -> None:
    """Slurm runs' new events and states, when there are any (no Slurm call otherwise)."""
    from core.backends.slurm import refresh

    refresh(store, ws)


def cmd_show(args: argparse.Namespace) -> int:
    from core.status import current_status, resolve_run

    ws, store = _open_store(args)
    run_id = resolve_run(store, args.run)
    row = store.get_run(run_id)
    assert row is not None
    row["status"] = current_status(store, ws, row)
    epochs = store.epochs(run_id)
    metrics = store.metrics(run_id)
    checkpoints = store.checkpoints(run_id)
    if args.json:
        out = {k: row[k] for k in row if k not in ("params",)}
        out["params"] = row["params"]
        out["epochs"] = [
            {k: e[k] for k in ("epoch", "train_loss", "val_loss", "lr")} for e in epochs
        ]
        out["metrics"] = metrics
        out["checkpoints"] = checkpoints
        print(json.dumps(out, indent=2, default=str))
        return 0
    print(f"run         {run_id}")
    print(f"experiment  {row['experiment']}  ({row['recipe']})")
    print(
        f"status      {status_text(row['status'])}"
        + (f"  — {row['error']}" if row.get("error") else "")
    )
    print(
        f"epochs      {row['epoch'] or 0}/{row['epochs_total'] or '?'}  best epoch "
        f"{row['best_epoch'] if row['best_epoch'] is not None else '-'}  best val "
        f"{fmt_num(row['best_val_loss'])}  train {fmt_num(row['best_train_loss'])}"
    )
    print(
        f"started     {fmt_time(row['started_at'])}  time {duration(row)}  pid {row['pid']}"
        f"  host {row['host']}  device {row.get('device') or '-'}"
    )
    if row.get("steps") and row.get("status") in ("running", "paused", "suspending"):
        print(f"progress    step {row['step']}/{row['steps']} of epoch {(row['epoch'] or 0) + 1}")
    if row.get("peak_rss_mb") is not None:
        print(f"cost        peak memory {row['peak_rss_mb']:.0f} MiB  CPU {row['cpu_s']:.1f} s")
    print(f"folder      {row['run_dir']}")
    from core.annotate import tags_of

    if tags_of(row) or row.get("archived"):
        print(f"tags        {' '.join('#' + t for t in tags_of(row)) or '-'}"
              + ("  (archived: nkd archive --undo shows it again)" if row.get("archived") else ""))
    if row.get("note"):
        print(f"note        {row['note']}")
    for ref in _references(Path(row["run_dir"] or "")):
        print(f"reference   {ref['key']} {ref['ref']} -> run {ref['run']}")
    if metrics:
        _print_metrics(metrics)
    if checkpoints:
        print("checkpoints")
        for c in checkpoints:
            print(
                f"  {c['role'] or '-':<6} epoch {c['epoch'] if c['epoch'] is not None else '-'}"
                f"  {c['path']}"
            )
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    from core.status import resolve_run

    ws, store = _open_store(args)
    run_id = resolve_run(store, args.run)
    log = ws.run_dir(run_id) / "output.log"
    if not log.is_file():
        raise NkdError(f"run '{run_id}': no output.log in {log.parent}")
    with open(log, encoding="utf-8", errors="replace") as fh:
        sys.stdout.write(fh.read())
        sys.stdout.flush()
        if not args.follow:
            return 0
        try:
            while True:
                chunk = fh.read()
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


def cmd_control(args: argparse.Namespace) -> int:
    from core.actions import send
    from core.status import resolve_run

    ws, store = _open_store(args)
    print(send(store, ws, resolve_run(store, args.run), args.command))
    return 0


def cmd_restart(args: argparse.Namespace) -> int:
    from core.actions import restart
    from core.status import resolve_run

    ws, store = _open_store(args)
    run_id = resolve_run(store, args.run)
    print(restart(store, ws, run_id))
    if args.detach:
        return 0
    return _follow_run(store, ws, run_id)


def cmd_kill(args: argparse.Namespace) -> int:
    from core.actions import kill
    from core.status import resolve_run

    ws, store = _open_store(args)
    print(kill(store, ws, resolve_run(store, args.run), grace=args.grace))
    return 0


def cmd_reindex(args: argparse.Namespace) -> int:
    from core.store.recover import rebuild

    path = _registry_path(args)
    if not path.is_file():
        raise NkdError(f"{path}: registry file not found")
    ws = Workspace.at(path)
    report, moved = rebuild(ws)
    if moved:
        print(f"{ws.db_path}: could not be opened; moved aside to {moved.name}")
    skipped = f", {report.skipped_lines} bad lines skipped" if report.skipped_lines else ""
    print(f"{ws.db_path}: rebuilt from {report.runs} run folders{skipped}")
    for line in report.lines():
        print(f"  {line}")
    return 0


def cmd_data_synth(args: argparse.Namespace) -> int:
    registry = load_registry(_registry_path(args))
    if args.kind == "noise":
        from core.noise.synth import synthesize

        synthesize(registry, per_class=args.per_class, seed=args.seed)
        return 0
    from core.separation.synth import synthesize as synth_tracks

    synth_tracks(registry, tracks=args.tracks, seconds=args.seconds, seed=args.seed)
    return 0


def cmd_data_index(args: argparse.Namespace) -> int:
    registry = load_registry(_registry_path(args))
    if args.source not in registry.data:
        known = ", ".join(registry.data) or "none"
        raise NkdError(f"{registry.path}: no data source '{args.source}' (known: {known})")
    from core.noise import dataset

    src = registry.data[args.source]
    if src.settings.get("kind") == "separation":
        raise NkdError(
            f"{registry.path}: data source '{args.source}' holds track folders; `nkd data index` "
            f"is for clip folders (separation tracks are checked stem by stem when a run starts)"
        )
    root = str(src.root.resolve())
    index = dataset.index_dir(Workspace.at(registry.path).cache_dir, src.name)
    source = dataset.Source.from_config(src.name, {**src.settings, "root": root,
                                                   "index_dir": str(index)})
    rows = dataset.ensure(source, args.sample_rate, args.segment_seconds, force=True)
    splits: dict[str, int] = {}
    for r in rows:
        splits[r.split] = splits.get(r.split, 0) + 1
    counts = ", ".join(f"{k} {v}" for k, v in sorted(splits.items()))
    print(f"{source.index / dataset.INDEX_NAME}: {len(rows)} segments by split ({counts})")
    return 0


def cmd_data_prepare(args: argparse.Namespace) -> int:
    from core.prepare import prepare_source

    for line in prepare_source(load_registry(_registry_path(args)), args.source,
                               args.sample_rate):
        print(line)
    return 0


def cmd_lineage(args: argparse.Namespace) -> int:
    from core.lineage import render
    from core.status import resolve_run

    ws, store = _open_store(args)
    run_id = resolve_run(store, args.run)
    for line in render(store, run_id):
        print(line)
    return 0


def cmd_blend(args: argparse.Namespace) -> int:
    from core.blends import blend_experiment, parse_weights
    from core.runner import launch_experiment

    registry, ws, store = _open(args)
    weights = parse_weights(args.weights, len(args.sources))
    exp = blend_experiment(
        registry,
        store,
        args.sources,
        weights,
        args.name,
        args.val_data,
        args.mask_scale,
        args.threshold,
    )
    launched = launch_experiment(registry, exp, store=store)
    print(f"{launched.run_id}: started (pid {launched.pid}), folder {launched.run_dir}")
    if args.detach:
        return 0
    return _follow_run(store, ws, launched.run_id)


def cmd_eval(args: argparse.Namespace) -> int:
    from core.evals import eval_experiment
    from core.runner import launch_experiment

    registry, ws, store = _open(args)
    exp = eval_experiment(registry, store, args.ref, args.data, args.split, args.set)
    launched = launch_experiment(registry, exp, store=store)
    print(f"{launched.run_id}: started (pid {launched.pid}), folder {launched.run_dir}")
    if args.detach:
        return 0
    return _follow_run(store, ws, launched.run_id)


def cmd_tui(args: argparse.Namespace) -> int:
    from nkd_tui.app import make_app

    app = make_app(_registry_path(args), message=getattr(args, "message", None))
    open_store(app.workspace).close()  # a broken database: one line here; a missing one: rebuilt
    app.run()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nkd", description="Experiment manager for audio distillation and separation runs."
    )
    registry_help = "experiments.toml (default ./experiments.toml or $NKD_REGISTRY)"
    parser.add_argument("--registry", "-r", help=registry_help)
    # the same option after the command too (`nkd ps --registry X`); SUPPRESS keeps a value
    # given before the command when none is given after it
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--registry", "-r", default=argparse.SUPPRESS, help=registry_help)

    def add(group: Any, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return group.add_parser(name, parents=[common], **kwargs)

    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = add(sub, "tui", help="the terminal interface (also: nkd with no command)")
    p.add_argument("--message", help="text shown in a notice when the interface opens (what a "
                   "script printed before it, which the interface would otherwise cover)")
    p.set_defaults(func=cmd_tui)

    add(sub, "check", help="validate the registry").set_defaults(func=cmd_check)
    p = add(sub, "list", help="experiments in the registry, with their latest run")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)
    add(sub, "keys", help="every registry key and what it means").set_defaults(func=cmd_keys)

    from nkd_tui.cli_capture import add_import_parser
    from nkd_tui.cli_capture import add_parser as add_capture
    from nkd_tui.cli_notes import add_parsers as add_notes
    from nkd_tui.cli_queue import add_parsers

    add_parsers(add, sub)
    add_notes(add, sub)
    add_capture(add, sub)
    add_import_parser(add, sub)

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
    p.set_defaults(func=cmd_logs)

    for action, text in (
        ("pause", "pause at the next batch boundary"),
        ("resume", "resume a paused or suspended run"),
        ("suspend", "checkpoint, exit and free the GPU; resume later"),
        ("stop", "finish the step, save the last checkpoint, status stopped"),
    ):
        p = add(sub, action, help=text)
        p.add_argument("run")
        p.set_defaults(func=cmd_control)
    p = add(sub, "restart", help="continue a stopped, failed or lost run from its last state")
    p.add_argument("run")
    p.add_argument("--detach", "-d", action="store_true")
    p.set_defaults(func=cmd_restart)
    p = add(sub, "kill", help="stop, then SIGKILL after a grace period")
    p.add_argument("run")
    p.add_argument("--grace", type=float, default=10.0, help="seconds to wait for stop")
    p.set_defaults(func=cmd_kill)

    add(sub, "reindex", help="rebuild the database from runs/*/events.jsonl").set_defaults(
        func=cmd_reindex
    )

    p = add(sub, "lineage", help="checkpoint family tree of a run or experiment, with SDR")
    p.add_argument("run", help="run id, unique prefix, or experiment (its latest run)")
    p.set_defaults(func=cmd_lineage)

    p = add(sub, "blend", help="weighted average of separator checkpoints, then evaluate")
    p.add_argument("sources", nargs="+", help="experiments, run ids (or run:<id>) or files")
    p.add_argument("--weights", required=True, help="comma-separated, summing to 1: 0.8,0.2")
    p.add_argument("--name", help="name of the blend's runs (default from the sources)")
    p.add_argument("--val-data", help="data source to evaluate on (default: the sources')")
    p.add_argument("--mask-scale", type=float, default=1.0)
    p.add_argument("--threshold", type=float, default=0.0)
    p.add_argument("--detach", "-d", action="store_true")
    p.set_defaults(func=cmd_blend)

    p = add(sub, "eval", help="score a checkpoint, run or experiment on any data source or "
            "folder, as a run of its own")
    p.add_argument("ref", help="run id, experiment, best:EXP, EXP@key=value, or a checkpoint file")
    p.add_argument("--data", required=True, help="data source name or folder")
    p.add_argument("--split", default="test", choices=["test", "val"],
                   help="record the scores as this split (test)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting of the evaluation (mask_scale, threshold, classes, ...)")
    p.add_argument("--detach", "-d", action="store_true")
    p.set_defaults(func=cmd_eval)

    data = sub.add_parser("data", help="demo data and dataset indexes").add_subparsers(
        dest="data_command", metavar="ACTION", required=True
    )
    p = add(data, "synth", help="write a procedural demo data set for the registry's sources")
    p.add_argument("kind", choices=["noise", "separation"])
    p.add_argument("--per-class", type=int, default=40, help="noise: files per class (40)")
    p.add_argument("--tracks", type=int, default=8, help="separation: training tracks (8)")
    p.add_argument("--seconds", type=float, default=8.0, help="separation: track length (8 s)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_data_synth)
    p = add(data, "index", help="scan a data source and write its dataset_index.csv into the "
            "workspace (cache/index/SOURCE)")
    p.add_argument("source", help="data source name in the registry")
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument("--segment-seconds", type=float, default=1.0)
    p.set_defaults(func=cmd_data_index)
    p = add(data, "prepare", help="decode a data source once into the workspace's audio cache "
            "(runs do it on first use)")
    p.add_argument("source", help="data source name in the registry")
    p.add_argument("--sample-rate", type=int, default=None,
                   help="this rate only (default: every rate the registry's experiments use)")
    p.set_defaults(func=cmd_data_prepare)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        args.func = cmd_tui
    try:
        return int(args.func(args))
    except NkdError as exc:
        for line in str(exc).splitlines() or [type(exc).__name__]:
            print(f"nkd: {line}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        return EXIT_OK
    except KeyboardInterrupt:
        print("nkd: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except sqlite3.Error as exc:  # a database that broke under us: one line and the way out
        where = args.registry if getattr(args, "registry", None) else "the workspace"
        print(f"nkd: run database of {where}: {exc}; `nkd reindex` rebuilds it from the run "
              f"folders", file=sys.stderr)
        return EXIT_REFUSED
    except OSError as exc:
        print(f"nkd: {exc.filename or 'a file'}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_REFUSED


if __name__ == "__main__":
    sys.exit(main())
