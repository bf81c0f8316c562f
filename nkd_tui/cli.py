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
from core.registry.workspace import Workspace
from core.store import FINAL, Store
from core.store.recover import open_store
from nkd_tui.format import fmt_num


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
    from core.runs.actions import kill, send
    from core.runs.progress import progress_text
    from core.runs.status import current_status

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


def _sync_slurm(store: Store, ws: Workspace) -> None:
    """Slurm runs' new events and states, when there are any (no Slurm call otherwise)."""
    from core.backends.slurm import refresh

    refresh(store, ws)


def cmd_control(args: argparse.Namespace) -> int:
    from core.runs.actions import send
    from core.runs.status import resolve_run

    ws, store = _open_store(args)
    print(send(store, ws, resolve_run(store, args.run), args.command))
    return 0


def cmd_restart(args: argparse.Namespace) -> int:
    from core.runs.actions import restart
    from core.runs.status import resolve_run

    ws, store = _open_store(args)
    run_id = resolve_run(store, args.run)
    print(restart(store, ws, run_id))
    if args.detach:
        return 0
    return _follow_run(store, ws, run_id)


def cmd_kill(args: argparse.Namespace) -> int:
    from core.runs.actions import kill
    from core.runs.status import resolve_run

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


def cmd_lineage(args: argparse.Namespace) -> int:
    from core.runs.lineage import render
    from core.runs.status import resolve_run

    ws, store = _open_store(args)
    run_id = resolve_run(store, args.run)
    for line in render(store, run_id):
        print(line)
    return 0


def cmd_blend(args: argparse.Namespace) -> int:
    from core.runs.blends import blend_experiment, parse_weights
    from core.runs.launch import launch_experiment

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
    from core.runs.evals import eval_experiment
    from core.runs.launch import launch_experiment

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
    from nkd_tui.cli_runs import add_parsers as add_runs

    add_parsers(add, sub)
    add_notes(add, sub)
    add_capture(add, sub)
    add_import_parser(add, sub)
    add_runs(add, sub)

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

    from nkd_tui.cli_data import add_parsers as add_data

    add_data(add, sub)
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
