"""Side-by-side comparison of runs, read from the store: no Textual here, so it is easy to test.

One row per run with its best values and headline metrics (accuracy / macro-F1 / ROC AUC for
noise runs, SDR per stem for separation runs), the score delta of a fine-tune or student against
its parent (`pretrained` or `teacher`: that run, or that experiment's newest finished run), the
parameters that differ, and each run's loss curve.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.runs import differences, provenance
from core.runs.annotate import tags_of
from core.store import ACTIVE, Store
from core.store.apply import best_of, settings_of
from core.store.states import Status
from core.util.files import csv_text
from core.util.text import visible
from nkd_tui.format import fmt_num, in_sample

# What a researcher reads first leads, so it is in the first screenful at 80-100 columns: the
# run, its status, the delta against its parent, then the headline metric (mean SDR before the
# stems); where a run stands in training and its bookkeeping follow.
FIRST = ["run", "status", "Δ vs parent"]
TWIN = "Δ vs no-KD twin"  # a KD run's score against the same run with alpha 0, when there is one
LAST = ["score", "epochs", "best val", "best ep", "experiment", "tags", "note"]
METRIC_ORDER = [
    "sdr mean",
    "sdr_global mean",  # the challenges' figure, named apart from BSS Eval's median
    "accuracy",
    "macro_f1",
    "roc_auc",
    "teacher_accuracy",
    "student_accuracy",
    "zero_shot_accuracy",
    "sdr bass",
    "sdr drums",
    "sdr other",
    "sdr vocals",
]
IGNORED_PARAMS = {"description", "group", "reported", "tags"}


@dataclass
class Comparison:
    run_ids: list[str]
    columns: list[str]
    rows: list[list[Any]]  # raw values in `columns` order, one list per run
    params: list[tuple[str, list[Any], bool]]  # key, value per run, whether they differ
    curves: dict[str, list[tuple[int, float | None, float | None]]] = field(default_factory=dict)
    active: bool = False  # a compared run is still going: the screen keeps reading
    # what made each run (code, data per source, environment, machine), differences first;
    # empty when no run has a provenance record
    made: list[tuple[str, list[Any], bool]] = field(default_factory=list)

    def sorted_rows(self, column: str, reverse: bool = False) -> list[list[Any]]:
        """Rows sorted by one column; missing values last either way."""
        i = self.columns.index(column)
        present = [r for r in self.rows if r[i] is not None]
        missing = [r for r in self.rows if r[i] is None]
        return sorted(present, key=lambda r: _sort_key(r[i]), reverse=reverse) + missing

    def to_csv(self) -> str:
        return csv_text(
            [
                self.columns,
                *[["" if v is None else v for v in row] for row in self.rows],
                [],
                ["parameter", *self.run_ids],
                *[[key, *[param_text(v) for v in values]] for key, values, _ in self.params],
                *([[], ["made by", *self.run_ids]] if self.made else []),
                *[[key, *[param_text(v) for v in values]] for key, values, _ in self.made],
            ]
        )


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, int | float) else (1, str(value))


def param_text(value: Any) -> str:
    if value is None:
        return "-"
    return visible(value, keep="") if isinstance(value, str) else json.dumps(value)


def _headline(metrics: list[dict[str, Any]]) -> dict[str, float]:
    """The newest value of each (name, stem) per split. A test-split value has a column of its
    own (`sdr mean test`), so one run's test SDR never stands beside another's validation SDR
    in the same column; so has a validation value whose gains were fitted on it (`sdr mean
    in-sample`); validation and unsplit values share the plain column."""
    chosen: dict[str, float] = {}
    for m in metrics:  # the store returns them oldest first: the newest wins
        if m.get("track"):
            continue
        name = m["name"] if not m.get("stem") else f"{m['name']} {m['stem']}"
        if m["name"] == "zero_shot_accuracy" and m.get("stem"):
            continue
        split = m.get("split")
        if split not in (None, "val", "test"):
            continue
        # a validation value whose gains were fitted on it has its own column: in-sample
        column = f"{name} test" if split == "test" else f"{name} in-sample" if in_sample(m) \
            else name
        chosen[column] = m["value"]
    return chosen


def score(run: dict[str, Any]) -> float | None:
    return run.get("sdr") if run.get("sdr") is not None else run.get("accuracy")


def _parent(store: Store, params: dict[str, Any]) -> dict[str, Any] | None:
    ref = params.get("pretrained") or params.get("teacher")
    if not isinstance(ref, str):
        return None
    from core.errors import RunError
    from core.registry import reference_form
    from core.runs.lookup import find_run

    kind, target = reference_form(ref)
    if kind == "file":
        return None
    try:
        return find_run(store, kind, target, "parent")
    except RunError:
        return None


# what may differ between a KD run and its no-KD twin besides alpha: its name and description
TWIN_IGNORED = IGNORED_PARAMS | {"alpha", "extends", "kd_temperature"}


def no_kd_runs(store: Store) -> list[dict[str, Any]]:
    """Finished hybrid-KD runs with alpha 0, newest first: the runs a KD run's twin is among."""
    found = store.conn.execute(
        "SELECT id FROM runs WHERE recipe = 'noise.hybrid_kd' AND status = ? "
        "ORDER BY created_at DESC", (Status.FINISHED,)).fetchall()
    runs = [store.get_run(run_id) for (run_id,) in found]
    return [r for r in runs if r and float((r.get("params") or {}).get("alpha") or 0) == 0]


def no_kd_twin(run: dict[str, Any], no_kd: list[dict[str, Any]]) -> dict[str, Any] | None:
    """For a hybrid-KD run (alpha > 0): the newest of `no_kd` with every other setting the
    same, its seed included (a registry's `.no_kd` experiment, or the alpha 0 run of a sweep);
    None when there is none."""
    p = run.get("params") or {}
    if run.get("recipe") != "noise.hybrid_kd" or not float(p.get("alpha") or 0) > 0:
        return None
    mine = {k: v for k, v in p.items() if k not in TWIN_IGNORED}
    return next((other for other in no_kd if {k: v for k, v in other["params"].items()
                                              if k not in TWIN_IGNORED} == mine), None)


def _delta(run: dict[str, Any], other: dict[str, Any] | None) -> float | None:
    if other is None or score(run) is None or score(other) is None:
        return None
    return round(score(run) - score(other), 6)


def compare(store: Store, run_ids: list[str]) -> Comparison:
    runs = [store.get_run(r) for r in run_ids]
    missing = [r for r, run in zip(run_ids, runs, strict=True) if run is None]
    if missing:
        raise KeyError(f"no such run: {', '.join(missing)}")
    params = [run["params"] for run in runs]  # the store parses them
    headlines = [_headline(store.metrics(r)) for r in run_ids]
    names = [n for base in METRIC_ORDER for n in (base, f"{base} in-sample", f"{base} test")
             if any(n in h for h in headlines)]
    kd = any(run.get("recipe") == "noise.hybrid_kd" for run in runs)
    no_kd = no_kd_runs(store) if kd else []
    twins = [no_kd_twin(run, no_kd) for run in runs]
    first = FIRST + ([TWIN] if any(twins) else [])
    columns = first + names + LAST
    rows = []
    for run, p, h, twin in zip(runs, params, headlines, twins, strict=True):
        rows.append(
            [
                run["id"],
                run["status"],
                _delta(run, _parent(store, p)),
                *([_delta(run, twin)] if any(twins) else []),
                *[h.get(n) for n in names],
                score(run),
                run.get("epoch"),
                run.get("best_val_loss"),
                best_of(run)[0],
                run["experiment"],
                " ".join(f"#{t}" for t in tags_of(run)) or None,
                run.get("note") or None,
            ]
        )
    active = any(run["status"] in ACTIVE for run in runs)
    # every setting a run used: its own, the schema defaults its recipe took and what it found
    # as it ran (a checkpoint's inference settings); a value not its own says where it came from
    used = [settings_of(run) for run in runs]
    keys = sorted({k for u in used for k in u} - IGNORED_PARAMS)
    table = []
    for key in keys:
        raw = [u.get(key, (None, ""))[0] for u in used]
        shown = [_with_origin(*u[key]) if key in u else None for u in used]
        table.append((key, shown, any(v != raw[0] for v in raw[1:])))
    table.sort(key=lambda t: (not t[2], t[0]))  # differences first
    curves = {
        r: [(e["epoch"], e["train_loss"], e["val_loss"]) for e in store.epochs(r)] for r in run_ids
    }
    made = differences.rows([provenance.read(Path(run["run_dir"] or "")) for run in runs])
    return Comparison(list(run_ids), columns, rows, table, curves, active, made)


def _with_origin(value: Any, origin: str) -> Any:
    """A setting's value as compared; one the run did not take from its experiment says so:
    `0 (default)`, `1 (checkpoint)`."""
    if origin in ("experiment", ""):
        return value
    return f"{json.dumps(value) if not isinstance(value, str) else value} ({origin})"


def fmt(value: Any, signed: bool = False) -> str:
    if isinstance(value, float) and signed:
        return f"{value:+.4g}"
    if value is None or isinstance(value, float):
        return fmt_num(value)
    return visible(str(value), keep="")  # a note or tag, as given: never a control sequence
