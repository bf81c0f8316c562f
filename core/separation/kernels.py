"""The array operations of BSS Eval that numpy does faster than torch on the CPU (its FFT,
many small matrix products, sums of squares over a leading dimension), with torch's on another
device; and running a function on one of torch's threads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch

T = TypeVar("T")
NUMPY_ON_CPU = True  # False: torch's operations everywhere (the tests compare the two)


def _numpy(x: torch.Tensor) -> bool:
    return NUMPY_ON_CPU and x.device.type == "cpu"


def matmul(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Batched a @ b into out; numpy's on the CPU, twice as fast as torch's there on many
    small complex products."""
    if not _numpy(a):
        return torch.matmul(a, b, out=out)
    np.matmul(a.numpy(), b.numpy(), out=out.numpy())
    return out


def add_products(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """out += a @ bᴴ, batched; numpy's on the CPU, as matmul."""
    if not _numpy(a):
        out.baddbmm_(a, b.mH)
        return
    b_h = np.conj(b.numpy()).swapaxes(-1, -2)
    out.numpy().__iadd__(np.matmul(a.numpy(), b_h))


def sum_squares(v: torch.Tensor) -> torch.Tensor:
    """Σ |v|² over the first dimension of a complex v [bins, ..., M] whose last dimension is
    contiguous: [..., M]. numpy's einsum on the CPU, several times faster than torch's
    reductions there."""
    if not _numpy(v):
        parts = torch.view_as_real(v)
        return torch.einsum("f...,f...->...", parts, parts).sum(-1)
    parts = v.numpy().view(np.float64)  # [bins, ..., 2·M]: real and imaginary parts
    full = np.einsum("f...,f...->...", parts, parts)
    return torch.from_numpy(full.reshape(*full.shape[:-1], -1, 2).sum(-1))


def rfft(x: torch.Tensor, n: int | None = None, out: torch.Tensor | None = None
          ) -> torch.Tensor:
    """torch.fft.rfft over the last dimension, into `out` (which may be a strided view), by
    numpy's pocketfft on the CPU: two to three times faster than torch's there, on these
    lengths (23040 and 2048 samples), and it lets other threads run meanwhile, as torch's
    does."""
    if not _numpy(x):
        spectrum = torch.fft.rfft(x, n=n)
        return spectrum if out is None else out.copy_(spectrum)
    spectrum = np.fft.rfft(x.numpy(), n=n, out=None if out is None else out.numpy())
    return out if out is not None else torch.from_numpy(spectrum)


def on_one_thread(fn: Callable[..., T], *args: Any) -> T:
    """fn(*args) on one of torch's threads: a setting of the calling thread alone (other
    threads keep their count), restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn(*args)
    finally:
        torch.set_num_threads(before)
