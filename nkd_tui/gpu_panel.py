"""The GPU panel: per GPU its utilisation, memory, and who uses it (nkd's runs by name, other
users' processes by pid and user). Shown and hidden with `g`."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from nkd_tui.poll import GpuReading

BAR = 6


def _bar(share: float) -> str:
    filled = round(max(0.0, min(1.0, share)) * BAR)
    return "█" * filled + "░" * (BAR - filled)


def render_gpus(reading: GpuReading | None) -> Text:
    if reading is None:
        return Text("GPUs: reading…", style="dim")
    if reading.error:
        return Text(f"GPUs: {reading.error}", style="red")
    if not reading.gpus:
        return Text("no GPU on this box: queued runs take slots ([queue] max_running)",
                    style="dim")
    text = Text(no_wrap=True, overflow="ellipsis")
    for n, gpu in enumerate(reading.gpus):
        if n:
            text.append("\n")
        total = float(gpu.get("memory_total_mib") or 0)
        used = float(gpu.get("memory_used_mib") or 0)
        util = float(gpu.get("utilization") or 0)
        visible = gpu["uuid"] if gpu.get("mig") else str(gpu["index"])
        text.append(f"GPU {gpu['index']} ", style="bold")
        text.append(f"{util:3.0f}% {_bar(util / 100)} ")
        text.append(f"{used / 1024:4.1f}/{total / 1024:.0f}G {_bar(used / max(total, 1))}  ")
        users = [(run, "green") for run in reading.holders.get(visible, ())]
        # processes of nkd's runs are shown by their run's name above, others' by user and pid
        users += [(f"{p.get('user', '?')}:{p['pid']} {float(p.get('memory_mib', 0)) / 1024:.0f}G",
                   "yellow") for p in gpu.get("processes", []) if not p.get("run")]
        if not users:
            text.append("free", style="dim")
        for i, (who, style) in enumerate(users):
            text.append(("" if i == 0 else ", ") + who, style=style)
    return text


class GpuPanel(Static):
    """A few lines under the run table; hidden until `g`."""

    DEFAULT_CSS = """
    GpuPanel {
        height: auto;
        max-height: 10;
        display: none;
        border-top: solid $primary-darken-2;
        padding: 0 1;
    }
    GpuPanel.-shown {
        display: block;
    }
    """

    def show_reading(self, reading: GpuReading | None) -> None:
        self.update(render_gpus(reading))
