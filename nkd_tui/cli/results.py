"""What an evaluation kept, on the command line: `nkd results RUN [--json]`, `nkd listen RUN
[RUN]` (the listening page on 127.0.0.1, with the ssh line to reach it from a laptop) and `nkd
report RUN... --out DIR` (the same page as a folder)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.errors import EXIT_OK, RunError


def _kept(args: argparse.Namespace, refs: list[str]) -> list[tuple[str, list[Any]]]:
    """(run id, its kept results) of each run named; RunError naming a run without any, or
    one whose kept files are gone."""
    from core.results.kept import load
    from core.runs.status import resolve_run
    from nkd_tui.cli.context import open_workspace

    ws, store = open_workspace(args)
    out = []
    for ref in refs:
        run = store.get_run(resolve_run(store, ref))
        assert run is not None
        results = load(Path(run["run_dir"]) if run["run_dir"] else ws.run_dir(run["id"]))
        if not results:
            what = "a command experiment" if run.get("recipe") in (None, "command") else \
                f"a {run.get('recipe')} run"
            raise RunError(f"{run['id']}: kept no results ({what}; only an evaluation, or the "
                           f"final validation, of a built-in separator or classifier keeps "
                           f"them)")
        out.append((run["id"], results))
    return out


def _complete(kept: list[tuple[str, list[Any]]]) -> None:
    for run_id, results in kept:
        for res in results:
            missing = res.missing()
            if missing:
                raise RunError(f"{run_id}: {res.folder / missing[0]} is gone ({len(missing)} "
                               f"kept files missing); evaluate the run again to keep them")


def cmd_results(args: argparse.Namespace) -> int:
    from core.results.table import lines
    from core.util.text import visible

    kept = _kept(args, [args.run])
    if args.json:
        print(json.dumps([{"run": run_id, **res.doc, "folder": str(res.folder)}
                          for run_id, results in kept for res in results], indent=2))
        return EXIT_OK
    for _run_id, results in kept:
        for res in results:
            for line in lines(res):
                print(visible(line, keep=""))  # track and clip names as given, made visible
    return EXIT_OK


def cmd_listen(args: argparse.Namespace) -> int:
    from core.results.page import build
    from core.results.serve import server, ssh_line

    kept = _kept(args, args.runs)
    _complete(kept)
    httpd = server(build(kept), args.port)
    port = httpd.server_address[1]
    print(f"serving the results of {', '.join(r for r, _ in kept)} on 127.0.0.1:{port}; "
          f"from your laptop:\n  {ssh_line(port)}\nCtrl-C stops it", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        print("stopped")
    finally:
        httpd.server_close()
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from core.results.page import build
    from core.results.serve import write_report

    kept = _kept(args, args.runs)
    _complete(kept)
    write_report(build(kept), Path(args.out))
    return EXIT_OK


def add_parsers(add: Callable[..., argparse.ArgumentParser], sub: Any) -> None:
    p = add(sub, "results", help="what a run's evaluation kept: tracks worst first, per-second "
            "SDR, global SDR; a classifier's confusion matrix and misclassified clips")
    p.add_argument("run", help="run id, unique prefix, or experiment (its latest run)")
    p.add_argument("--json", action="store_true", help="the kept results as JSON")
    p.set_defaults(func=cmd_results)
    p = add(sub, "listen", help="serve a run's kept excerpts and spectrograms on 127.0.0.1 "
            "(prints the ssh -L line); a second run (a blend's parent) beside it")
    p.add_argument("runs", nargs="+", metavar="RUN", help="one run, or two side by side")
    p.add_argument("--port", type=int, default=8765, help="the port (0: any free one)")
    p.set_defaults(func=cmd_listen)
    p = add(sub, "report", help="the listening page of runs as a self-contained folder")
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.add_argument("--out", required=True, help="a folder that does not exist yet (or is empty)")
    p.set_defaults(func=cmd_report)
