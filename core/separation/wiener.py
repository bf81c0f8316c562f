"""Multichannel Wiener filtering of a separator's estimates (the post-filter Open-Unmix and the
SiSEC systems use), in torch, so it runs batched on the GPU when the run has one.

From the estimated magnitudes of every stem and channel (masks times the mixture's) and the
mixture's complex STFT: the first estimates take the mixture's phase; each pass then fits every
stem's power spectral density v_j(f, t) (the mean over channels of |y_j|^2) and its spatial
covariance R_j(f) (over all frames, normalised by v_j), and filters the mixture with
y_j = v_j R_j (sum_k v_k R_k)^-1 x. The estimates then sum to the mixture exactly.
"""

from __future__ import annotations

import torch

CHUNK = 2048  # frames filtered at once: a whole song's filters never sit in memory together


@torch.no_grad()
def wiener(spec: torch.Tensor, mags: torch.Tensor, iterations: int = 1,
           eps: float = 1e-10) -> torch.Tensor:
    """spec: mixture STFT [C, F, T] (complex); mags: estimates [S, C, F, T] (>= 0).
    Returns the filtered complex estimates [S, C, F, T]."""
    phase = spec / spec.abs().clamp_min(eps)
    y = mags.to(spec.real.dtype) * phase[None]
    channels = spec.shape[0]
    eye = torch.eye(channels, dtype=spec.dtype, device=spec.device)
    for _ in range(iterations):
        v = (y.real**2 + y.imag**2).mean(dim=1)  # [S, F, T]
        # spatial covariance per stem and bin, normalised by the stem's power
        r = torch.einsum("scft,sdft->sfcd", y, y.conj()) / (
            v.sum(dim=-1)[..., None, None] + eps)  # [S, F, C, C]
        out = torch.empty_like(y)
        for start in range(0, spec.shape[-1], CHUNK):
            part = slice(start, start + CHUNK)
            vp = v[..., part].to(spec.dtype)  # [S, F, t]
            cov = torch.einsum("sft,sfcd->ftcd", vp, r)  # the mixture's model [F, t, C, C]
            load = cov.diagonal(dim1=-2, dim2=-1).real.mean(-1)[..., None, None]
            inv = torch.linalg.inv(cov + (load * 1e-6 + eps) * eye)
            x = spec[:, :, part].permute(1, 2, 0)  # [F, t, C]
            mixed = torch.einsum("ftcd,ftd->ftc", inv, x)  # (sum_k v_k R_k)^-1 x
            out[..., part] = torch.einsum("sft,sfcd,ftd->scft", vp, r, mixed)
        y = out
    return y
