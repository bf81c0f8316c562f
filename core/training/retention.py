"""The checkpoints a training run writes and keeps as it goes, as its `keep_checkpoints` says
(core/registry/retention.py): the best epoch's weights, the last ones, and the epochs kept in
files of their own (the K best, every N-th).

Each file written is recorded (a `checkpoint` event, with its sha256 and size); an epoch file
that drops out of the K best is recorded deleted (a `checkpoint_deleted` event) before it is
removed, so the store, `nkd reindex` and the disk agree even if the run is killed in between.
Which epochs are among the K best is part of the run's resumable state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from core.registry.retention import Keep
from core.runs.context import RunContext
from core.training import checkpoint
from core.util.checksum import sha256_file


@dataclass
class Checkpoints:
    ctx: RunContext
    prefix: str  # teacher: best_teacher_encoder.pth, teacher_encoder_epoch007.pth
    parts: dict[str, nn.Module]
    meta: dict[str, Any]  # written into every checkpoint beside the weights
    parents: list[dict[str, Any]]  # the lineage of every checkpoint
    keep: Keep
    select_by: str
    top: dict[int, float] = field(default_factory=dict)  # epoch -> its value, lower is better

    def path(self, part: str, role: str = "best", epoch: int = 0) -> Path:
        folder = self.ctx.checkpoints_dir
        if role == "epoch":
            return folder / f"{self.prefix}_{part}_epoch{epoch:03d}.pth"
        return folder / f"{'best_' if role == 'best' else ''}{self.prefix}_{part}.pth"

    def epoch_end(self, epoch: int, best_epoch: int, ranked: float, value: float,
                  val_loss: float, last_due: bool) -> None:
        """Write (and drop) what the policy says after `epoch`: `ranked` is the epoch's value
        with lower better, `value` the one recorded."""
        said = {"epoch": epoch, "best_epoch": best_epoch, "value": value, "val_loss": val_loss}
        if best_epoch == epoch:
            self._write("best", said)
        if self.keep.last and last_due:
            self._write("last", said)
        if not self.keep.epoch_files():
            return
        kept_for_good = self._for_good(epoch)
        if self.keep.top > 1:
            self.top[epoch] = ranked
            if len(self.top) > self.keep.top:  # the worst drops out; of equals, the later one
                worst = max(self.top, key=lambda e: (self.top[e], e))
                del self.top[worst]
                if worst != epoch and not self._for_good(worst):
                    self._drop(worst)
        if kept_for_good or epoch in self.top:
            self._write("epoch", said)

    def _for_good(self, epoch: int) -> bool:
        return bool(self.keep.every) and epoch % self.keep.every == 0

    def _write(self, role: str, said: dict[str, Any]) -> None:
        for name, module in self.parts.items():
            path = self.path(name, role, said["epoch"])
            meta = {**self.meta, **said, "part": name, "select_by": self.select_by,
                    "run_id": self.ctx.run_id, "role": role}
            checkpoint.save(path, f"{self.prefix}_{name}", module.state_dict(), meta)
            self.ctx.reporter.checkpoint(str(path), role, epoch=said["epoch"],
                                         value=said["value"], sha256=sha256_file(path),
                                         parents=self.parents)

    def _drop(self, epoch: int) -> None:
        for name in self.parts:
            path = self.path(name, "epoch", epoch)
            if path.is_symlink() or not path.is_file():
                continue
            self.ctx.reporter.emit("checkpoint_deleted", id=f"{self.ctx.run_id}/{path.name}",
                                   path=str(path), bytes=path.stat().st_size,
                                   by=f"keep_checkpoints {self.keep.text()}")
            path.unlink()

    def state(self) -> dict[str, float]:
        return {str(e): v for e, v in self.top.items()}

    def load(self, state: dict[str, float] | None) -> None:
        self.top = {int(e): float(v) for e, v in (state or {}).items()}


__all__ = ["Checkpoints"]
