"""`nkd capture LOG`: what a run would record from a log its script printed, before running it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from core.errors import EXIT_OK, NkdError


def cmd_capture(args: argparse.Namespace) -> int:
    from core.capture.patterns import Follower
    from core.capture.records import RecordError, parse_record

    builtins, patterns = True, []
    if args.experiment:
        from core.registry import load_registry
        from core.registry.settings import with_defaults
        from nkd_tui.cli.context import registry_path

        exp = load_registry(registry_path(args)).get(args.experiment)
        settings = with_defaults("command", exp.params)
        builtins = bool(settings["builtin_scalars"])
        patterns = list(settings["output_scalars"])
    path = Path(args.log)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise NkdError(f"{path}: cannot be read ({exc.strerror})") from None
    follower = Follower(builtins, patterns, every=0.0)
    epochs: dict[int, dict[str, Any]] = {}
    metrics: list[dict[str, Any]] = []
    for line in text.splitlines():
        try:
            record = parse_record(line, path.parent, (path.parent,))
        except RecordError:
            record = None
        events = [record] if record else follower.feed(line)
        if record and record["type"] == "epoch":
            follower.reported_itself = True
        for event in events:
            if event["type"] == "epoch":
                epochs.setdefault(event["epoch"], {}).update(
                    {k: v for k, v in event.items() if k not in ("type", "epoch")})
            elif event["type"] == "metric":
                metrics.append({k: v for k, v in event.items() if k != "type"})
    if args.json:
        print(json.dumps({"epochs": epochs, "metrics": metrics}, indent=2))
        return EXIT_OK
    keys = sorted({k for values in epochs.values() for k in values},
                  key=lambda k: (k not in ("train_loss", "val_loss", "lr"), k))
    print(f"{path}: {len(epochs)} epochs, {len(metrics)} metrics would be recorded")
    if epochs:
        print("  ".join(["epoch", *keys]))
        for epoch, values in sorted(epochs.items()):
            print("  ".join([f"{epoch:>5}", *(f"{values[k]:.6g}" if k in values else "-"
                                             for k in keys)]))
    for m in metrics:
        where = f" ({m['stem']})" if m.get("stem") else ""
        print(f"metric {m['name']}{where} = {m['value']:.6g}")
    return EXIT_OK


def add_parser(add: Any, sub: Any) -> None:
    p = add(sub, "capture", help="what a run would record from a log its script printed")
    p.add_argument("log", help="a log file the script wrote or printed")
    p.add_argument("--experiment", "-e", help="use this experiment's output_scalars too")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_capture)


def cmd_import(args: argparse.Namespace) -> int:
    from core.runs.history import read_manifest, scan
    from nkd_tui.cli.context import open_workspace

    ws, store = open_workspace(args)
    if args.scan:
        folder = Path(args.scan)
        if not folder.is_dir():
            raise NkdError(f"{folder}: not a folder")
        entries = scan(folder, args.pattern)
        if not entries:
            raise NkdError(f"{folder}: no file matches {args.pattern!r}")
    elif args.manifest:
        entries = read_manifest(Path(args.manifest))
    else:
        raise NkdError("nkd import: give a manifest (TOML or CSV) or --scan FOLDER")
    from core.runs.history import import_entries

    for line in import_entries(ws, store, entries):
        print(line)
    return EXIT_OK


def add_import_parser(add: Any, sub: Any) -> None:
    p = add(sub, "import", help="bring checkpoints made before nkd in as imported runs")
    p.add_argument("manifest", nargs="?", help="a TOML ([[checkpoint]]) or CSV manifest")
    p.add_argument("--scan", metavar="FOLDER", help="import the files of a folder by name")
    p.add_argument("--pattern", default="{exp}_{date}_{time}_best.pth",
                   help="file names to import with --scan ({exp}, {date}, {time})")
    p.set_defaults(func=cmd_import)
