"""`nkd lineage`, `nkd blend` and `nkd eval`: checkpoint families, and runs made of other runs."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from nkd_tui.cli.context import open_registry, open_workspace
from nkd_tui.cli.follow import started


def cmd_lineage(args: argparse.Namespace) -> int:
    from core.runs.lineage import render
    from core.runs.status import resolve_run

    ws, store = open_workspace(args)
    run_id = resolve_run(store, args.run)
    for line in render(store, run_id):
        print(line)
    return 0


def cmd_blend(args: argparse.Namespace) -> int:
    from core.runs.blends import blend_experiment, parse_weights

    registry, ws, store = open_registry(args)
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
    return _start(args, registry, ws, store, exp)


def _start(args: argparse.Namespace, registry: Any, ws: Any, store: Any, exp: Any) -> int:
    """An ad-hoc run (a blend, an evaluation) started, then followed unless --detach."""
    from core.runs.launch import launch_experiment

    return started(store, ws, launch_experiment(registry, exp, store=store), args.detach)


def cmd_eval(args: argparse.Namespace) -> int:
    from core.runs.evals import eval_experiment

    registry, ws, store = open_registry(args)
    exp = eval_experiment(registry, store, args.ref, args.data, args.split, args.set)
    return _start(args, registry, ws, store, exp)


def add_parsers(add: Callable[..., argparse.ArgumentParser], sub: Any) -> None:
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
