"""Module boundaries: the layer order of core/ and nkd_tui/ (read from the source, every import,
also those inside functions), no import cycles, no module over 450 lines; and, in fresh
processes, core is UI-free and the CLI/TUI is torch-free."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Lowest first. A module may import its own layer and the ones below it, never one above
# (README, "Architecture"). A package's layer is that of its longest matching prefix.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("core.errors",),
    ("core.util",),
    ("core.registry",),
    ("core.store",),
    ("core.backends",),
    ("core.runs",),
    ("core.capture",),
    ("core.data", "core.results"),
    ("core.training",),
    ("core.noise", "core.separation"),
    ("core.worker", "core.report", "core"),
    ("nkd_tui",),
)
MAX_LINES = 450


def _modules(root: Path = ROOT) -> dict[str, Path]:
    found = {}
    for top in ("core", "nkd_tui"):
        for path in (root / top).rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the project modules it imports (a name imported from a package that is a module
    of its own counts as that module)."""
    modules = _modules(root)

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                target = owner(name) if name.split(".")[0] in ("core", "nkd_tui") else None
                if target and target != module and not module.startswith(target + "."):
                    graph[module].add(target)
    return graph


def _layer(module: str) -> int:
    best = (-1, -1)
    for rank, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best[1]:
                best = (rank, len(prefix))
    assert best[0] >= 0, f"{module} is in no layer: add it to LAYERS and the README"
    return best[0]


def _upward(graph: dict[str, set[str]]) -> list[str]:
    return [f"{m} ({LAYERS[_layer(m)][0]}) imports {t} ({LAYERS[_layer(t)][0]})"
            for m, targets in sorted(graph.items()) for t in sorted(targets)
            if _layer(t) > _layer(m)]


def test_no_import_goes_up_a_layer() -> None:
    upward = _upward(_graph())
    assert not upward, "\n".join(upward)


def test_no_import_cycles() -> None:
    graph = _graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the path, 2 done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_no_module_over_the_size_limit() -> None:
    long = {m: n for m, p in _modules().items()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"split along a seam: {long}"


def test_layer_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The graph reads imports inside functions too (that is where the cycles hid), and a name
    imported from a package counts as the module it is."""
    for name, text in {
        "core/__init__.py": "",
        "core/backends/__init__.py": "",
        "core/backends/queue.py": "def f():\n    from core.runs import actions\n",
        "core/runs/__init__.py": "",
        "core/runs/actions.py": "import core.backends.queue\n",
    }.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = _graph(tmp_path)
    assert graph["core.backends.queue"] == {"core.runs", "core.runs.actions"}  # its __init__ too
    assert _upward(graph) == [
        "core.backends.queue (core.backends) imports core.runs (core.runs)",
        "core.backends.queue (core.backends) imports core.runs.actions (core.runs)"]


def _loaded_after(stmt: str) -> set[str]:
    code = f"import sys\n{stmt}\nprint('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    return {m.split(".")[0] for m in out.split()}


def test_core_imports_no_ui() -> None:
    loaded = _loaded_after(
        "import core, core.registry, core.store, core.runs.launch, core.worker, "
        "core.store.reporter, core.report, core.registry.recipes, core.training.loop, "
        "core.data.features, core.noise.teacher, core.noise.student, core.noise.hybrid, "
        "core.separation.recipes, core.separation.bsseval, core.runs.lineage, core.runs.blends, "
        "core.runs.status, core.runs.actions, core.backends.slurm, "
        "core.backends.queue.scheduler, core.runs.plan, core.backends.gpus, core.store.events, "
        "core.capture.records"
    )
    assert not loaded & {"textual", "textual_plotext", "rich"}, loaded & {"textual", "rich"}


def test_cli_imports_no_torch() -> None:
    loaded = _loaded_after(
        "import nkd_tui, nkd_tui.cli, nkd_tui.app, nkd_tui.compare_screen, "
        "nkd_tui.lineage_screen, nkd_tui.cli.queue, nkd_tui.gpu_panel, core.runs.launch, "
        "core.worker, core.runs.lineage, core.runs.blends, core.backends.queue.scheduler"
    )
    assert "torch" not in loaded and "librosa" not in loaded
    assert "pynvml" not in loaded  # NVML: read in `python -m core.backends.gpus`, never in the TUI


def test_nkd_help_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "nkd_tui.cli", "--help"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    for command in ("run", "ps", "logs", "show", "pause", "resume", "suspend", "stop", "kill",
                    "restart", "reindex", "data", "blend", "lineage", "queue"):
        assert command in out


BACKEND_NAMES = ("local", "slurm")
STATUS_NAMES = ("queued", "starting", "running", "paused", "stopping", "suspending", "finished",
                "stopped", "suspended", "failed", "killed", "lost", "blocked", "cancelled")


def _literal_compares(names: tuple[str, ...], exempt: tuple[str, ...]) -> list[str]:
    """Places outside `exempt` that compare a value with one of `names` written as a literal
    (`x == "slurm"`, `x in ("failed", "killed")`), or name one in an SQL condition."""
    found = []
    sql = [f"= '{n}'" for n in names]
    for module, path in _modules().items():
        if module.startswith(exempt):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare):
                for side in [node.left, *node.comparators]:
                    values = side.elts if isinstance(side, ast.Tuple | ast.List | ast.Set) \
                        else [side]
                    if any(isinstance(v, ast.Constant) and v.value in names for v in values):
                        found.append(f"{module}:{node.lineno}")
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and any(
                    s in node.value for s in sql):
                found.append(f"{module}:{node.lineno} (SQL)")
    return found


def test_only_the_backends_compare_a_backends_name() -> None:
    """Where a run executes is asked of its backend (core/backends), never by its name."""
    assert _literal_compares(BACKEND_NAMES, ("core.backends",)) == []


def test_statuses_are_compared_through_their_enumeration() -> None:
    """A status is compared as `Status.X` or through the states table (core/store/states.py),
    never as a string written again somewhere."""
    assert _literal_compares(STATUS_NAMES, ("core.store.states",)) == []
