"""Checkpoint lineage as a tree of runs: roots, fine-tunes, blends (with weights), evaluations.

The store keeps edges between checkpoints (`lineage`: child, parent, relation, weight). For
reading, checkpoints are folded into their runs: a run's node shows its experiment, status and
key metric (mean SDR, else accuracy); an edge shows how the child came from the parent.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.runs import provenance
from core.runs.differences import lineage_marks
from core.store import Store


@dataclass(frozen=True)
class Edge:
    parent: str  # run id
    child: str  # run id
    relation: str  # pretrained | blend | teacher | evaluated
    weight: float | None


def _run(checkpoint_id: str) -> str:
    return checkpoint_id.split("/", 1)[0]


def edges(store: Store) -> list[Edge]:
    out = {}
    for row in store.lineage():
        e = Edge(_run(row["parent"]), _run(row["child"]), row["relation"], row["weight"])
        if e.parent != e.child:
            out[(e.parent, e.child, e.relation)] = e
    return list(out.values())


def component(all_edges: list[Edge], run_id: str) -> tuple[list[str], dict[str, list[Edge]]]:
    """Roots of the family `run_id` belongs to, and each run's outgoing edges."""
    parents, children = defaultdict(list), defaultdict(list)
    for e in all_edges:
        parents[e.child].append(e)
        children[e.parent].append(e)
    family, todo = {run_id}, [run_id]
    while todo:  # everything connected, up and down
        node = todo.pop()
        for nxt in [e.parent for e in parents[node]] + [e.child for e in children[node]]:
            if nxt not in family:
                family.add(nxt)
                todo.append(nxt)
    roots = sorted(r for r in family if not parents[r])
    return roots, children


@dataclass
class Node:
    """One run in the family tree, reached from its parent by `via` (e.g. "blend 0.8")."""

    run_id: str
    label: str  # run id, experiment, status and key metric
    via: str  # "" for a root
    repeated: bool = False  # already shown under another parent (a blend has several)
    children: list[Node] = field(default_factory=list)
    marks: tuple[str, ...] = ()  # made unlike its parent: "code differs", "data differs"


def describe(store: Store, run_id: str) -> str:
    row = store.get_run(run_id)
    if row is None:
        return f"{run_id} (not in the store)"
    if row.get("sdr") is not None:
        metric = f"SDR {row['sdr']:.3f} dB"
    elif row.get("accuracy") is not None:
        metric = f"acc {row['accuracy']:.3f}"
    else:
        metric = "-"
    counts = store.conn.execute(
        "SELECT CASE WHEN deleted_at IS NULL THEN NULL ELSE deleted_by END AS by, COUNT(*) "
        "FROM checkpoints WHERE run = ? GROUP BY by ORDER BY by",
        (run_id,)).fetchall()
    live = sum(n for by, n in counts if by is None)
    gone = [(by, n) for by, n in counts if by is not None]
    deleted = ""
    if gone and not live:
        deleted = f"  (checkpoints deleted by {' and '.join(by for by, _ in gone)})"
    elif gone:
        deleted = "  (" + "; ".join(f"{n} checkpoints deleted by {by}" for by, n in gone) + ")"
    return f"{run_id}  [{row['experiment']}, {row['status']}]  {metric}{deleted}"


def tree(store: Store, run_id: str) -> list[Node]:
    """The roots of the family `run_id` belongs to, each with its descendants."""
    roots, children = component(edges(store), run_id)
    labels: dict[str, str] = {}
    made: dict[str, dict[str, Any] | None] = {}  # each run's provenance, read once
    shown: set[str] = set()

    def provenance_of(rid: str) -> dict[str, Any] | None:
        if rid not in made:
            row = store.get_run(rid)
            made[rid] = provenance.read(Path(row["run_dir"])) if row and row.get("run_dir") \
                else None
        return made[rid]

    def build(rid: str, via: str, parent: str | None) -> Node:
        if rid not in labels:
            labels[rid] = describe(store, rid)
        marks = tuple(lineage_marks(provenance_of(parent), provenance_of(rid))) if parent \
            else ()
        node = Node(rid, labels[rid], via, repeated=rid in shown, marks=marks)
        if node.repeated:
            return node
        shown.add(rid)
        for e in sorted(children[rid], key=lambda e: (e.child, e.relation)):
            weight = f" {e.weight:g}" if e.weight is not None else ""
            node.children.append(build(e.child, f"{e.relation}{weight}", rid))
        return node

    return [build(root, "", None) for root in roots or [run_id]]


def render(store: Store, run_id: str) -> list[str]:
    """Text lines of the tree containing `run_id` (marked with ◀)."""
    lines: list[str] = []

    def walk(node: Node, prefix: str, branch: str) -> None:
        via = f"{node.via} → " if node.via else ""
        mark = "  ◀" if node.run_id == run_id else ""
        again = "  (shown above)" if node.repeated else ""
        unlike = f"  [{', '.join(node.marks)}]" if node.marks else ""
        lines.append(f"{prefix}{branch}{via}{node.label}{unlike}{mark}{again}")
        inner = prefix + {"├─ ": "│  ", "└─ ": "   "}.get(branch, "")
        for i, child in enumerate(node.children):
            walk(child, inner, "└─ " if i == len(node.children) - 1 else "├─ ")

    for root in tree(store, run_id):
        walk(root, "", "")
    return lines
