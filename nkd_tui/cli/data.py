"""`nkd data synth|index|prepare`: demo data, dataset indexes and the prepared-audio cache."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from core.errors import NkdError
from core.registry.workspace import Workspace, index_dir
from nkd_tui.cli.context import registry_path


def cmd_data_synth(args: argparse.Namespace) -> int:
    from core.registry import load_registry

    registry = load_registry(registry_path(args))
    if args.kind == "noise":
        from core.noise.synth import synthesize

        synthesize(registry, per_class=args.per_class, seed=args.seed)
        return 0
    from core.separation.synth import synthesize as synth_tracks

    synth_tracks(registry, tracks=args.tracks, seconds=args.seconds, seed=args.seed)
    return 0


def cmd_data_index(args: argparse.Namespace) -> int:
    from core.registry import data_source, load_registry
    from core.registry.folders import looks_like_folder

    registry = load_registry(registry_path(args))
    if args.source not in registry.data and not looks_like_folder(args.source):
        known = ", ".join(registry.data) or "none"
        raise NkdError(f"{registry.path}: no data source '{args.source}' (known: {known}; or "
                       f"a folder: ./PATH)")
    from core.data import noise_index as dataset

    src = data_source(registry, args.source)  # a folder as `nkd run --set data=` takes it
    if src.settings.get("kind") == "separation":
        raise NkdError(
            f"{registry.path}: data source '{args.source}' holds track folders; `nkd data index` "
            f"is for clip folders (separation tracks are checked stem by stem when a run starts)"
        )
    root = str(src.root.resolve())
    index = index_dir(Workspace.at(registry.path).cache_dir, src.name)
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
    from core.data.prepare import prepare_source
    from core.registry import load_registry

    for line in prepare_source(load_registry(registry_path(args)), args.source,
                               args.sample_rate):
        print(line)
    return 0


def add_parsers(add: Callable[..., argparse.ArgumentParser], sub: Any) -> None:
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
