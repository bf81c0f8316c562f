"""What the training loop is set up with: the device (TF32 on Ampere and newer), seeds,
optimiser and schedule, torch.compile with an eager fallback that says why, and the RNG states
a resume restores."""

from __future__ import annotations

import ast
import random
from typing import Any

import numpy as np
import torch
from torch import nn

from core.runs.context import RunContext
from core.store.states import Status


def tune_device(device: torch.device) -> bool:
    """TF32 matmuls and convolutions on a CUDA device of compute capability 8.0 or newer (A100,
    H100, RTX 30xx and later): float32 range at tensor-core speed. Returns whether it was set."""
    if device.type != "cuda" or torch.cuda.get_device_capability(device) < (8, 0):
        return False
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return True


def compile_parts(parts: dict[str, nn.Module]) -> bool:
    """Each part compiled in place (`Module.compile`, so every reference to it is compiled).
    Compilation itself happens at the first step; a failure there falls back to eager."""
    try:
        for module in parts.values():
            module.compile()
    except Exception as exc:  # noqa: BLE001 - the run goes on eagerly, with the reason
        fall_back_to_eager(parts, exc)
        return False
    print("compile: parts compiled with torch.compile (the first step compiles)", flush=True)
    return True


def fall_back_to_eager(parts: dict[str, nn.Module], exc: BaseException) -> None:
    """Undo `Module.compile` and say why, in one line."""
    for module in parts.values():
        module._compiled_call_impl = None  # noqa: SLF001 - what Module.compile set
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    print(f"compile: torch.compile could not compile this model here ({type(exc).__name__}: "
          f"{reason}); training eagerly", flush=True)


def pick_device(name: str = "auto") -> torch.device:
    if name in ("auto", "", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        from core.errors import RunError

        raise RunError(f"device '{name}' asked for, but CUDA is not available on this machine")
    return device


def run_device(ctx: RunContext) -> torch.device:
    """The device a run uses (auto -> cuda when there is one), recorded on the run."""
    device = pick_device(ctx.params["device"])
    ctx.reporter.status(Status.RUNNING, device=str(device))
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_optimizer(params: list[nn.Parameter], p: dict[str, Any]) -> torch.optim.Optimizer:
    name, lr, wd = (
        p["optimizer"],
        float(p["lr"]),
        float(p["weight_decay"]),
    )
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=wd)
    return torch.optim.Adam(params, lr=lr, weight_decay=wd)


def make_scheduler(opt: torch.optim.Optimizer, p: dict[str, Any], epochs: int):
    name = p["scheduler"]
    if name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=3)
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    return None


def optimizer_to(opt: torch.optim.Optimizer, device: torch.device) -> None:
    for state in opt.state.values():
        for k, v in state.items():
            if isinstance(v, torch.Tensor) and k != "step":
                state[k] = v.to(device)


def numpy_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "name": name,
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached": float(cached),
    }


def set_numpy_state(s: dict[str, Any]) -> None:
    keys = s["keys"].numpy().astype(np.uint32)
    np.random.set_state((s["name"], keys, s["pos"], s["has_gauss"], s["cached"]))


def literal(text: str) -> Any:
    return ast.literal_eval(text)


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Every random state a resumed run needs to go on exactly: torch's, the loop's generator,
    CUDA's, numpy's and Python's (as text: no pickle)."""
    return {
        "torch": torch.get_rng_state(),
        "generator": generator.get_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": numpy_state(),
        "python": repr(random.getstate()),
    }


def restore_rng(generator: torch.Generator, rng: dict[str, Any]) -> None:
    torch.set_rng_state(rng["torch"])
    generator.set_state(rng["generator"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    set_numpy_state(rng["numpy"])
    random.setstate(literal(rng["python"]))
