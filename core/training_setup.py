"""Device and compiler settings of the training loop: TF32 on Ampere and newer, torch.compile
with an eager fallback that says why."""

from __future__ import annotations

import torch
from torch import nn


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
