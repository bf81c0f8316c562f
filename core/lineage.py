"""Checkpoint lineage as a tree of runs: roots, fine-tunes, blends (with weights), evaluations.

The store keeps edges between checkpoints (`lineage`: child, parent, relation, weight). For
reading, checkpoints are folded into their runs: a run's node shows its experiment, status and
key metric (mean SDR, else accuracy); an edge shows how the child came from the parent.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

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


def render(store: Store, run_id: str) -> list[str]:
    """Text lines of the tree containing `run_id` (marked with ◀)."""
    roots, children = component(edges(store), run_id)
    if not roots:
        roots = [run_id]
    info: dict[str, str] = {}

    def label(rid: str) -> str:
        if rid not in info:
            row = store.get_run(rid)
            if row is None:
                info[rid] = f"{rid} (not in the store)"
            else:
                metric = (
                    f"SDR {row['sdr']:.3f} dB"
                    if row.get("sdr") is not None
                    else f"acc {row['accuracy']:.3f}"
                    if row.get("accuracy") is not None
                    else "-"
                )
                info[rid] = f"{rid}  [{row['experiment']}, {row['status']}]  {metric}"
        return info[rid] + ("  ◀" if rid == run_id else "")

    lines: list[str] = []
    shown: set[str] = set()

    def walk(rid: str, prefix: str, via: str) -> None:
        again = rid in shown
        lines.append(f"{prefix}{via}{label(rid)}" + ("  (shown above)" if again else ""))
        if again:
            return
        shown.add(rid)
        kids = sorted(children[rid], key=lambda e: (e.child, e.relation))
        for i, e in enumerate(kids):
            last = i == len(kids) - 1
            branch = prefix.replace("├─ ", "│  ").replace("└─ ", "   ")
            weight = f" {e.weight:g}" if e.weight is not None else ""
            walk(e.child, branch + ("└─ " if last else "├─ "), f"{e.relation}{weight} → ")

    for root in roots:
        walk(root, "", "")
    return lines
