"""The `device` a run asks for, checked at launch: a name torch knows (`auto`, `cpu`, `cuda`,
`cuda:N`), and, for a run on this box, a CUDA device it will see. A run on Slurm is checked on
its node, where its GPUs are."""

from __future__ import annotations

import re

from core.errors import RunError

DEVICE = re.compile(r"auto|cpu|mps|cuda(?::(\d+))?")


def check_device(device: object, gpus: int, here: bool, where: str) -> None:
    """RunError (exit 2, nothing written) for a device the run could not use. `gpus` is how
    many GPUs the run is given (0: it sees the box's own); `here`: it runs on this box."""
    name = str(device if device is not None else "auto").strip()
    said = re.sub(r"[^\x20-\x7e]", "?", name)
    match = DEVICE.fullmatch(name)
    if match is None:
        raise RunError(f"{where}: key 'device': '{said}' is not a device (auto, cpu, cuda or "
                       f"cuda:N); nothing was started")
    if not here or not name.startswith("cuda"):
        return
    from core.backends.gpus import cuda_devices

    have = cuda_devices()
    if have is None:
        return  # cannot be told here: the run says so if it cannot use it
    seen = gpus or have
    if have == 0:
        raise RunError(f"{where}: key 'device': '{name}' asked for, but this machine has no "
                       f"CUDA GPU; use --set device=cpu (or auto); nothing was started")
    index = int(match.group(1) or 0)
    if index >= seen:
        given = f"the {gpus} GPU{'s' if gpus > 1 else ''} it is given" if gpus else \
            f"this machine's {have} GPU{'s' if have > 1 else ''}"
        raise RunError(f"{where}: key 'device': '{name}' does not exist: the run sees {given}, "
                       f"cuda:0 to cuda:{seen - 1}; nothing was started")
