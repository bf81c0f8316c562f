"""The shared training loop of the noise and separation recipes.

One `Trainer.fit()` gives every recipe the same behaviour: train and validation loss each epoch
into the store, early stopping with patience, the checkpoints its `keep_checkpoints` keeps (the
best `best_<prefix>_<part>.pth`, the last `<prefix>_<part>.pth`, epochs of their own: see
core/training/retention.py) under checkpoints/<run_id>/, `loss_curve_train_val.png` in the
run folder, a resumable state file written at every epoch end (model, optimiser, scheduler, RNG
states, counters) so that a suspended run continues exactly where it stopped, bf16 autocast on
CUDA, and pause / stop / suspend at batch boundaries.

The loop never waits on the device per batch: running sums stay on the device and are read at
the epoch end and for a progress event at most every PROGRESS_S seconds. `accumulate` sums the
gradients of N batches per optimiser step, `grad_clip` clips their norm, `compile` runs the parts
through torch.compile (eager, with one line saying why, where that fails), and TF32 matmuls are
on for Ampere and newer. A suspend inside an epoch saves the step it reached: the resumed run
trains exactly the batches it had not, with the same random state, so no finished step is lost.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.backends.queue.halving import rung_until
from core.data.batches import Batch, Batcher, Epoch
from core.errors import RunError
from core.registry.keys import SELECT_BY
from core.registry.retention import parse_keep
from core.registry.settings import with_defaults
from core.runs.context import RunContext
from core.runs.control import StopRun
from core.store.apply import early_stop_text
from core.training import checkpoint
from core.training.retention import Checkpoints
from core.training.setup import (
    compile_parts,
    fall_back_to_eager,
    make_optimizer,
    make_scheduler,
    optimizer_to,
    pick_device,
    restore_rng,
    rng_state,
    run_device,
    seed_everything,
    tune_device,
)

# step(batch, train) -> (mean loss, examples in the batch, sums of extra per-example counts)
Step = Callable[[Batch, bool], tuple[torch.Tensor, int, dict[str, float]]]
PROGRESS_S = 2.0  # at most one step-progress event (and one device read) this often


@dataclass
class Trainer:
    ctx: RunContext
    prefix: str  # teacher -> teacher_encoder.pth, best_teacher_encoder.pth, teacher_state.pt
    parts: dict[str, nn.Module]  # saved one checkpoint file per part
    step: Step
    # an epoch's training batches from the epoch's generator; a callable that also takes
    # `epoch` and `start` (a step) can begin mid-epoch itself, others are skipped forward
    train_batches: Callable[..., Iterable[Batch]]
    val_batches: Callable[[], Iterable[Batch]]
    meta: dict[str, Any]  # written into every checkpoint beside the weights
    device: torch.device
    parents: list[dict[str, Any]] = field(default_factory=list)  # lineage of every checkpoint
    params: dict[str, Any] = field(default_factory=dict)
    trainable: list[nn.Parameter] | None = None  # default: every parameter of every part
    # a score of the model as it is after an epoch's validation, recorded as val_<name> (the
    # separation recipe's validation SDR); the run's `select_by` says whether it picks the best
    select: tuple[str, Callable[[], float]] | None = None

    def __post_init__(self) -> None:
        # a run's resolved settings; a loop driven directly (tests, benches) takes the schema's
        # defaults for what it is not given
        p = with_defaults("training", self.params or self.ctx.params)
        self.params = p
        self.epochs = int(p["epochs"])
        self.patience = int(p["patience"])
        self.amp = bool(p["amp"]) and self.device.type == "cuda"
        self.accumulate = max(1, int(p["accumulate"]))
        self.grad_clip = float(p["grad_clip"])
        # what the best epoch is chosen by (the run's `select_by`, recorded on the run): the
        # store, the checkpoint's meta and the end-of-run line all name the same epoch
        self.select_by = str(p["select_by"])
        self.select_field, self.higher_is_better = SELECT_BY[self.select_by]
        self.compiled = False
        params = (
            self.trainable
            if self.trainable is not None
            else [q for m in self.parts.values() for q in m.parameters() if q.requires_grad]
        )
        self.optimizer = make_optimizer(params, p)
        self.scheduler = make_scheduler(self.optimizer, p, self.epochs)
        self.generator = torch.Generator().manual_seed(int(p["seed"]))
        self.epoch = 0
        self.best = math.inf
        self.best_epoch = 0
        self.bad_epochs = 0
        self.history: dict[str, list[float]] = {"train_loss": [], "val_loss": []}
        self.step_in_epoch = 0  # steps of the current epoch already trained (a mid-epoch resume)
        self.carried: dict[str, Any] = {}  # that epoch's running sums, read back from the state
        self.epoch_rng: torch.Tensor | None = None  # the generator as the epoch began
        self._progress_at = 0.0
        self._steps_seen = 0
        self.state_path = self.ctx.checkpoints_dir / f"{self.prefix}_state.pt"
        keep = parse_keep(p["keep_checkpoints"])
        assert keep is not None, p["keep_checkpoints"]  # the registry checked its form
        self.checkpoints = Checkpoints(self.ctx, self.prefix, self.parts, self.meta, self.parents,
                                       keep, self.select_by)

    # ── checkpoints ──────────────────────────────────────────────────────────────────────────

    def _save_state(self, mid_epoch: dict[str, Any] | None = None) -> None:
        checkpoint.save_payload(
            self.state_path,
            {
                "format": checkpoint.FORMAT,
                "kind": f"{self.prefix}_state",
                "parts": {k: m.state_dict() for k, m in self.parts.items()},
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler else {},
                "counters": {
                    "epoch": self.epoch,
                    "best": self.best,
                    "best_epoch": self.best_epoch,
                    "bad_epochs": self.bad_epochs,
                },
                "kept_epochs": self.checkpoints.state(),  # the K best epochs' files
                # where a suspend inside an epoch stopped: its step and running sums, and the
                # generator as the epoch began (the epoch's order is drawn from it again)
                "mid_epoch": mid_epoch or {},
                "history": self.history,
                "rng": rng_state(self.generator),
            },
        )

    def _load_state(self) -> None:
        state = checkpoint.load(self.state_path, kind=f"{self.prefix}_state")
        for k, m in self.parts.items():
            m.load_state_dict(state["parts"][k])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler and state["scheduler"]:
            self.scheduler.load_state_dict(state["scheduler"])
        c = state["counters"]
        self.epoch, self.best, self.best_epoch, self.bad_epochs = (
            int(c["epoch"]),
            float(c["best"]),
            int(c["best_epoch"]),
            int(c["bad_epochs"]),
        )
        self.history = {k: list(v) for k, v in state["history"].items()}
        self.checkpoints.load(state.get("kept_epochs"))
        mid = state.get("mid_epoch") or {}
        self.step_in_epoch = int(mid.get("step", 0))
        self.carried = dict(mid)
        self.epoch_rng = mid.get("epoch_rng")
        restore_rng(self.generator, state["rng"])

    # ── the loop ─────────────────────────────────────────────────────────────────────────────

    def fit(self) -> dict[str, Any]:
        """Train to the last epoch or to early stopping; returns what happened."""
        if self.ctx.resume and self.state_path.is_file():
            self._load_state()
            print(
                f"resumed {self.prefix} after epoch {self.epoch} (best {self.best:.4f} at "
                f"epoch {self.best_epoch})",
                flush=True,
            )
        else:
            seed_everything(int(self.params["seed"]))
            self.generator.manual_seed(int(self.params["seed"]))
        for m in self.parts.values():
            m.to(self.device)
        optimizer_to(self.optimizer, self.device)
        tune_device(self.device)
        if self.params["compile"]:
            self.compiled = compile_parts(self.parts)
        stopped_early = False
        try:
            while self.epoch < self.epochs:
                if self.patience and self.bad_epochs >= self.patience:
                    stopped_early = True
                    break
                self._one_epoch()
                self.ctx.control.epoch_end()
                self._rung_end()
        finally:
            self.plot()
        best = self.best_value()
        if stopped_early:
            event = self.ctx.reporter.emit(
                "early_stop", epoch=self.epoch, select_by=self.select_by,
                patience=self.patience, best_epoch=self.best_epoch, best_value=best)
            print(f"early stop {early_stop_text(event)}", flush=True)
        return {
            "epochs": self.epoch,
            "best_epoch": self.best_epoch,
            "select_by": self.select_by,
            "best_value": best,
            "early_stopped": stopped_early,
        }

    def _rung_end(self) -> None:
        """A halving sweep's trial stops at its rung (its state is saved): suspended, for the
        queue to promote it or prune it."""
        until = rung_until(self.ctx.run_dir)
        if until is not None and until == self.epoch < self.epochs:
            print(f"halving: rung {until} reached; suspended until its sweep decides", flush=True)
            raise StopRun("suspend")

    def best_value(self) -> float:
        """The best epoch's `select_by` value, as recorded (the loop keeps it negated when
        higher is better, so that lower is always better inside)."""
        return -self.best if self.higher_is_better else self.best

    def _step(self, batch: Batch, train: bool) -> tuple[torch.Tensor, int, dict[str, Any]]:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
            if not (train and self.compiled):
                return self.step(batch, train)
            # a compiled step is where torch.compile can still fail (the first one, or a
            # recompilation for a new shape): then the step is run again eagerly, from the
            # random state it began with
            states = (self.generator.get_state(), torch.get_rng_state(),
                      torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None)
            try:
                return self.step(batch, train)
            except Exception as exc:  # noqa: BLE001 - any compiler failure means: run eagerly
                fall_back_to_eager(self.parts, exc)
                self.compiled = False
                self.generator.set_state(states[0])
                torch.set_rng_state(states[1])
                if states[2] is not None:
                    torch.cuda.set_rng_state_all(states[2])
                return self.step(batch, train)

    def _epoch_batches(self) -> tuple[Iterator[Batch], int | None]:
        """This epoch's training batches from step `step_in_epoch` on, and the epoch's steps."""
        start = self.step_in_epoch
        if start and self.epoch_rng is not None:
            now = self.generator.get_state()  # the state the suspend left (augmentations)
            self.generator.set_state(self.epoch_rng)  # the epoch's order is drawn again
        else:
            now = None
            self.epoch_rng = self.generator.get_state()
        takes = inspect.signature(self.train_batches).parameters
        if "start" in takes and "epoch" in takes:
            batches = self.train_batches(self.generator, epoch=self.epoch, start=start)
            total = len(batches) + start if isinstance(batches, Sized) else None
            it = iter(batches)
        else:
            batches = self.train_batches(self.generator)
            total = len(batches) if isinstance(batches, Sized) else None
            it = iter(batches)
            for _ in range(start):  # skipped forward: drawn, not trained on
                next(it, None)
        if now is not None:
            self.generator.set_state(now)
        return it, total

    def _train(self) -> tuple[float, dict[str, float]]:
        for m in self.parts.values():
            m.train(True)
        carried, self.carried = self.carried, {}
        dev = self.device
        total = torch.tensor(float(carried.get("loss", 0.0)), dtype=torch.float64, device=dev)
        count = int(carried.get("count", 0))
        sums = {k: torch.tensor(float(v), dtype=torch.float64, device=dev)
                for k, v in carried.get("sums", {}).items()}
        step = self.step_in_epoch
        batches, steps = self._epoch_batches()
        params = [q for group in self.optimizer.param_groups for q in group["params"]]
        self.optimizer.zero_grad(set_to_none=True)
        pending = 0  # batches whose gradients are summed but not yet stepped
        for batch in batches:
            if pending == 0:  # control acts between optimiser steps, never inside one
                try:
                    self.ctx.control.boundary()
                except StopRun as stop:
                    if stop.action == "suspend" and step:
                        self._save_state({
                            "step": step, "loss": float(total), "count": count,
                            "sums": {k: float(v) for k, v in sums.items()},
                            "epoch_rng": self.epoch_rng,
                        })
                        print(f"suspended inside epoch {self.epoch + 1} after step {step}"
                              f"{f'/{steps}' if steps else ''}", flush=True)
                    raise
            loss, n, extra = self._step(batch, True)
            (loss / self.accumulate if self.accumulate > 1 else loss).backward()
            pending += 1
            step += 1
            if pending == self.accumulate:
                self._optimizer_step(params)
                pending = 0
            total += loss.detach().double() * n
            count += n
            for k, v in extra.items():
                sums[k] = sums.get(k, 0) + (v.detach().double() if torch.is_tensor(v) else v)
            self._progress(step, steps, total, count)
        if pending:  # the epoch's last, shorter group
            self._optimizer_step(params)
        self.step_in_epoch = 0
        count = max(count, 1)
        return float(total) / count, {k: float(v) / count for k, v in sums.items()}

    def _optimizer_step(self, params: list[nn.Parameter]) -> None:
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def _progress(self, step: int, steps: int | None, total: torch.Tensor, count: int) -> None:
        """A step-progress event for the TUI's ETA: the first step, then at most every
        PROGRESS_S seconds (the only time the running loss is read from the device)."""
        self._steps_seen += 1
        now = time.monotonic()
        if self._steps_seen > 1 and now - self._progress_at < PROGRESS_S:
            return
        self._progress_at = now
        self.ctx.reporter.emit("progress", epoch=self.epoch + 1, step=step, steps=steps,
                               loss=float(total) / max(count, 1))

    def _validate(self) -> tuple[float, dict[str, float]]:
        for m in self.parts.values():
            m.train(False)
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        count, sums = 0, {}
        self.ctx.control.defer_suspend = True  # a suspend here waits for the epoch's end
        try:
            with torch.no_grad():
                for batch in self.val_batches():
                    self.ctx.control.boundary()
                    loss, n, extra = self._step(batch, False)
                    total += loss.detach().double() * n
                    count += n
                    for k, v in extra.items():
                        sums[k] = sums.get(k, 0) + (v.double() if torch.is_tensor(v) else v)
        finally:
            self.ctx.control.defer_suspend = False
        count = max(count, 1)
        return float(total) / count, {k: float(v) / count for k, v in sums.items()}

    def _one_epoch(self) -> None:
        started = time.perf_counter()
        train_loss, train_extra = self._train()
        train_seconds = time.perf_counter() - started
        val_loss, val_extra = self._validate()
        if self.select is not None:
            name, score = self.select
            val_extra[name] = score()
        values = {"val_loss": val_loss, "train_loss": train_loss,
                  **{f"val_{k}": v for k, v in val_extra.items()}}
        if self.select_field not in values:
            raise RunError(f"select_by = \"{self.select_by}\": this recipe records no "
                           f"{self.select_field} (it records {', '.join(sorted(values))})")
        chosen = values[self.select_field]
        chosen = -chosen if self.higher_is_better else chosen
        self.epoch += 1
        lr = self.optimizer.param_groups[0]["lr"]
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(val_loss)
        elif self.scheduler is not None:
            self.scheduler.step()
        self.history["train_loss"].append(train_loss)
        self.history["val_loss"].append(val_loss)
        improved = chosen < self.best
        if improved:
            self.best, self.best_epoch, self.bad_epochs = chosen, self.epoch, 0
        else:
            self.bad_epochs += 1
        extra = {f"train_{k}": v for k, v in train_extra.items()}
        extra |= {f"val_{k}": v for k, v in val_extra.items()}
        self.ctx.reporter.epoch(
            self.epoch,
            train_loss=train_loss,
            val_loss=val_loss,
            lr=lr,
            seconds=round(time.perf_counter() - started, 4),
            train_seconds=round(train_seconds, 4),
            **extra,
        )
        print(
            f"{self.prefix} epoch {self.epoch}/{self.epochs} train {train_loss:.4f} "
            f"val {val_loss:.4f}"
            + "".join(f" {k} {v:.4f}" for k, v in extra.items())
            + (" *best*" if improved else ""),
            flush=True,
        )
        every = max(1, int(self.params["checkpoint_every"]))
        self.checkpoints.epoch_end(  # a checkpoint's value is what selects the best
            self.epoch, self.best_epoch, chosen, values[self.select_field], val_loss,
            last_due=self.epoch % every == 0 or self.epoch == self.epochs)
        self._save_state()

    def plot(self) -> Path | None:
        """The loss curve PNG; a plot is never worth a failed run, so a failure is one line."""
        if not self.history["train_loss"]:
            return None
        from core.training.plots import loss_curve

        return loss_curve(
            self.ctx.run_dir / "loss_curve_train_val.png",
            self.history,
            f"{self.ctx.run_id} ({self.prefix})",
        )

    def load_best(self) -> None:
        """Put the best epoch's weights back into the parts (for evaluation after fit)."""
        for name, module in self.parts.items():
            path = self.checkpoints.path(name, "best")
            if path.is_file():
                module.load_state_dict(checkpoint.load(path)["state_dict"])


__all__ = ["Batcher", "Epoch", "StopRun", "Trainer", "pick_device", "run_device", "seed_everything"]
