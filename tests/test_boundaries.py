"""Module boundaries, checked in fresh processes: core is UI-free, the CLI/TUI is torch-free."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _loaded_after(stmt: str) -> set[str]:
    code = f"import sys\n{stmt}\nprint('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    return {m.split(".")[0] for m in out.split()}


def test_core_imports_no_ui() -> None:
    loaded = _loaded_after(
        "import core, core.registry, core.store, core.runs.launch, core.worker, core.store.reporter, "
        "core.report, core.registry.recipes, core.training.loop, core.data.features, core.noise.recipes, "
        "core.separation.recipes, core.separation.bsseval, core.runs.lineage, core.runs.blends, "
        "core.runs.status, core.runs.actions, core.backends.slurm, "
        "core.backends.queue.scheduler, core.runs.plan, core.backends.gpus, core.store.events, core.capture.records"
    )
    assert not loaded & {"textual", "textual_plotext", "rich"}, loaded & {"textual", "rich"}


def test_cli_imports_no_torch() -> None:
    loaded = _loaded_after(
        "import nkd_tui, nkd_tui.cli, nkd_tui.app, nkd_tui.compare_screen, "
        "nkd_tui.lineage_screen, nkd_tui.cli_queue, nkd_tui.gpu_panel, core.runs.launch, "
        "core.worker, core.runs.lineage, core.runs.blends, core.backends.queue.scheduler"
    )
    assert "torch" not in loaded and "librosa" not in loaded
    assert "pynvml" not in loaded  # NVML is read in `python -m core.backends.gpus`, never in the TUI


def test_nkd_help_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "nkd_tui.cli", "--help"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    for command in ("run", "ps", "logs", "show", "pause", "resume", "suspend", "stop", "kill",
                    "restart", "reindex", "data", "blend", "lineage", "queue"):
        assert command in out
