"""Time-domain augmentations of seed 003, batched on the waves' device.

removal (a random span set to silence), noise (Gaussian noise at a chosen SNR), shift (a circular
time shift), mix1 = removal + shift, mix2 = removal + noise + shift. Random numbers come from a CPU
generator so that a run is reproducible and resumable on any device.
"""

from __future__ import annotations

import torch

KINDS = {
    "none": (),
    "removal": ("removal",),
    "noise": ("noise",),
    "shift": ("shift",),
    "mix1": ("removal", "shift"),
    "mix2": ("removal", "noise", "shift"),
}
REMOVAL_FRACTION = (0.1, 0.25)  # share of the clip that is removed
SHIFT_FRACTION = 0.25  # largest shift, as a share of the clip, either way


def removal(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    b, n = x.shape
    lo, hi = REMOVAL_FRACTION
    width = ((lo + (hi - lo) * torch.rand(b, generator=g)) * n).long()
    start = (torch.rand(b, generator=g) * (n - width)).long()
    pos = torch.arange(n)
    mask = (pos[None] >= start[:, None]) & (pos[None] < (start + width)[:, None])
    return x.masked_fill(mask.to(x.device), 0.0)


def noise(x: torch.Tensor, g: torch.Generator, snr_db: float) -> torch.Tensor:
    power = x.square().mean(dim=1, keepdim=True).clamp_min(1e-12)
    scale = (power / 10 ** (snr_db / 10)).sqrt()
    return x + scale * torch.randn(x.shape, generator=g).to(x.device)


def shift(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    b, n = x.shape
    offsets = ((torch.rand(b, generator=g) * 2 - 1) * SHIFT_FRACTION * n).long()
    index = (torch.arange(n)[None] - offsets[:, None]) % n
    return x.gather(1, index.to(x.device))


def apply(kind: str, x: torch.Tensor, g: torch.Generator, snr_db: float = 20.0) -> torch.Tensor:
    for step in KINDS[kind]:
        if step == "removal":
            x = removal(x, g)
        elif step == "noise":
            x = noise(x, g, snr_db)
        else:
            x = shift(x, g)
    return x
