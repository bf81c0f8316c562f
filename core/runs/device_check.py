"""The `device` a run on this box asks for, checked at launch against the CUDA devices it will
see (the name itself is checked by the registry, as the key's kind). A run on Slurm is checked
on its node, where its GPUs are."""

from __future__ import annotations

from core.errors import RunError


def check_device(device: object, gpus: int, here: bool, where: str) -> None:
    """RunError (exit 2, nothing written) for a CUDA device the run could not use. `gpus` is
    how many GPUs the run is given (0: it sees the box's own); `here`: it runs on this box."""
    name = str(device or "auto")
    if not here or not name.startswith("cuda"):
        return
    from core.backends.gpus import cuda_devices

    have = cuda_devices()
    if have is None:
        return  # cannot be told here: the run says so if it cannot use it
    if have == 0:
        raise RunError(f"{where}: key 'device': '{name}' asked for, but this machine has no "
                       f"CUDA GPU; use --set device=cpu (or auto); nothing was started")
    seen = gpus or have
    index = int(name.partition(":")[2] or 0)
    if index >= seen:
        given = f"the {gpus} GPU{'s' if gpus > 1 else ''} it is given" if gpus else \
            f"this machine's {have} GPU{'s' if have > 1 else ''}"
        raise RunError(f"{where}: key 'device': '{name}' does not exist: the run sees {given}, "
                       f"cuda:0 to cuda:{seen - 1}; nothing was started")
