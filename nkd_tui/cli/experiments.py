"""`nkd check`, `nkd list`, `nkd keys`: the registry validated, its experiments, every key."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from nkd_tui.cli.context import open_registry, registry_path, text_table


def cmd_check(args: argparse.Namespace) -> int:
    from core.registry import load_registry

    registry = load_registry(registry_path(args))
    n = len(registry.sweeps)
    sweeps = f"{n} sweep{'s' if n != 1 else ''}, " if n else ""
    print(
        f"{registry.path}: {len(registry.experiments)} experiments, "
        f"{len(registry.data)} data sources, {sweeps}all valid"
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    registry, _ws, store = open_registry(args)
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
        print(text_table(rows, header))
    return 0


def cmd_keys(_args: argparse.Namespace) -> int:
    from core.registry import REQUIRED
    from core.registry.keys import KEYS

    for key, spec in KEYS.items():
        choices = f" ({'/'.join(spec.choices)})" if spec.choices else ""
        limits = f" [{spec.range_text()}]" if spec.range_text() else ""
        needed = [r for r, keys in REQUIRED.items() if key in keys]
        needed_by = f"; required by {', '.join(needed)}" if needed else ""
        default = f"; default {spec.default_text()}" if spec.default_text() else ""
        print(f"{key:22} {spec.kind:10} {spec.help}{choices}{limits}{default}{needed_by}")
    return 0


def add_parsers(add: Callable[..., argparse.ArgumentParser], sub: Any) -> None:
    add(sub, "check", help="validate the registry").set_defaults(func=cmd_check)
    p = add(sub, "list", help="experiments in the registry, with their latest run")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)
    add(sub, "keys", help="every registry key and what it means").set_defaults(func=cmd_keys)
