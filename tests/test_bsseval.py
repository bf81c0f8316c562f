"""BSS Eval v4 (images): values the definitions imply, and agreement with museval."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.signal import lfilter

from core.separation import correlations, distortion, framewise, kernels
from core.separation.bsseval import bss_eval, frames

SR = 8000


def _sources(seconds: float = 3.0, seed: int = 0) -> np.ndarray:
    """Four stereo sources [4, n, 2]: tones with vibrato and a little noise, all different."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    out = []
    for f in (55.0, 220.0, 440.0, 990.0):
        left = np.sin(2 * np.pi * f * t * (1 + 0.01 * np.sin(2 * np.pi * 0.7 * t)))
        tone = np.stack([left, np.roll(left, 3) * 0.8], -1)
        out.append(
            tone * (1 + 0.5 * np.sin(2 * np.pi * 0.5 * t))[:, None]
            + 0.1 * rng.standard_normal((t.size, 2))
        )
    return np.stack(out)


def _simple_sdr(s: np.ndarray, e: np.ndarray) -> np.ndarray:
    """10·log10(Σ s² / Σ (s − ŝ)²) per 1 s frame, channels pooled."""
    return np.array(
        [
            10 * np.log10((s[a:b] ** 2).sum() / ((s[a:b] - e[a:b]) ** 2).sum())
            for a, b in frames(s.shape[0], SR, SR)
        ]
    )


def test_framing_follows_museval() -> None:
    assert frames(10, 4, 4) == [(0, 4), (4, 8)]  # the trailing partial window is dropped
    assert frames(3, 4, 4) == [(0, 3)]


def test_identical_estimate_is_perfect() -> None:
    refs = _sources()
    scores = bss_eval(refs, refs.copy(), window=SR, hop=SR)
    assert np.isinf(scores.sdr.numpy()).all()  # Σ (ŝ − s)² is exactly zero
    assert (scores.si_sdr.numpy() > 250).all()  # only rounding left in the fitted scale


def test_scaled_estimate() -> None:
    refs = _sources()
    ests = refs.copy()
    ests[1] *= 0.5
    scores = bss_eval(refs, ests, window=SR, hop=SR)
    expected = -20 * math.log10(0.5)  # Σ s² / Σ (0.5 s − s)² = 4: 6.02 dB in every frame
    assert np.allclose(scores.sdr[1].numpy(), expected, atol=1e-9)
    assert np.allclose(scores.isr[1].numpy(), expected, atol=1e-6)  # all of it is "spatial"
    assert np.isinf(scores.si_sdr[1].numpy()).all() or (scores.si_sdr[1].numpy() > 200).all()
    assert (scores.sir[1].numpy() > 100).all() and (scores.sar[1].numpy() > 100).all()


def test_filtered_estimate_is_spatial_distortion_not_artifacts() -> None:
    refs = _sources()
    ests = refs.copy()
    ests[0] = lfilter([0.6, 0.3, -0.1], [1.0], refs[0], axis=0)
    scores = bss_eval(refs, ests, window=SR, hop=SR)
    assert np.allclose(scores.sdr[0].numpy(), _simple_sdr(refs[0], ests[0]), atol=1e-9)
    assert np.allclose(scores.isr[0].numpy(), scores.sdr[0].numpy(), atol=0.05)
    assert (scores.sar[0].numpy() > 40).all()  # a 3-tap filter is inside the 512-tap model


def test_added_noise_is_artifacts() -> None:
    refs = _sources()
    rng = np.random.default_rng(5)
    ests = refs.copy()
    ests[2] = refs[2] + 0.3 * rng.standard_normal(refs[2].shape)
    scores = bss_eval(refs, ests, window=SR, hop=SR)
    simple = _simple_sdr(refs[2], ests[2])
    assert np.allclose(scores.sdr[2].numpy(), simple, atol=1e-9)
    # the noise is artifact, less the part that 512 taps of 8 references happen to fit
    sar = scores.sar[2].numpy()
    assert (sar >= simple).all() and (sar < simple + 1.5).all()
    assert (scores.isr[2].numpy() > simple + 10).all()


def test_silent_frames_are_undefined() -> None:
    refs = _sources()
    refs[3, SR : 2 * SR] = 0.0
    scores = bss_eval(refs, refs + 0.01, window=SR, hop=SR)
    assert np.isnan(scores.sdr[:, 1].numpy()).all()  # every source, in that frame
    assert np.isfinite(scores.sdr[:, 0].numpy()).all()
    med = scores.medians()["sdr"]
    assert np.isfinite(med).all()


def test_a_silent_estimate_scores_0_db_and_leaves_the_other_stems_alone() -> None:
    refs = _sources()
    rng = np.random.default_rng(1)
    est = refs + 0.05 * rng.standard_normal(refs.shape)
    before = bss_eval(refs, est, window=SR, hop=SR)
    est[2] = 0.0  # what a threshold makes of a quiet stem
    after = bss_eval(refs, est, window=SR, hop=SR)
    np.testing.assert_allclose(after.sdr[2].numpy(), 0.0, atol=1e-9)  # Σ s² / Σ (0 − s)² = 1
    for k in ("isr", "sir", "sar", "si_sdr"):
        assert np.isnan(getattr(after, k)[2].numpy()).all(), k
    for i in (0, 1, 3):  # the good stems keep their SDR, unchanged; none is NaN
        np.testing.assert_allclose(after.sdr[i].numpy(), before.sdr[i].numpy(), rtol=1e-12)
        for k in ("isr", "sir", "sar"):
            assert np.isfinite(getattr(after, k)[i].numpy()).all(), (k, i)
    assert np.isfinite(after.medians()["sdr"]).all()


def test_a_silent_stretch_of_an_estimate_is_undefined_only_for_that_stem() -> None:
    refs = _sources()
    est = refs * 0.9
    est[1, SR : 2 * SR] = 0.0
    scores = bss_eval(refs, est, window=SR, hop=SR)
    assert scores.sdr[1, 1].item() == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(scores.sir[1, 1].item())
    assert np.isfinite(scores.sir[0].numpy()).all() and np.isfinite(scores.sir[1, 0].item())


def _museval():
    """museval's metrics module alone (the package's import needs ffmpeg; its metrics do not)."""
    from bench.museval_ref import museval_metrics

    metrics = museval_metrics()
    if metrics is None:
        pytest.skip("museval is not installed")
    return metrics


def test_agrees_with_museval() -> None:
    from bench.museval_ref import v4

    museval = _museval()
    refs = _sources(4.0, seed=1)
    rng = np.random.default_rng(2)
    ests = refs.copy()
    ests[0] = 0.7 * lfilter([1, 0.5, -0.2], [1], refs[0], axis=0) + 0.05 * refs[1]  # filtered
    ests[1] = refs[1] + 0.2 * rng.standard_normal(refs[1].shape)  # noisy
    ests[2] = 1.3 * refs[2] + 0.1 * refs[3] + 0.05 * rng.standard_normal(refs[2].shape)
    ests[3] = 0.5 * lfilter(
        [0.2, 0.3, 0.3], [1, -0.1], refs[3], axis=0
    ) + 0.05 * rng.standard_normal(refs[3].shape)  # filtered and rescaled
    ours = bss_eval(refs, ests, window=SR, hop=SR)
    theirs = v4(museval, refs, ests, SR)
    for name, ref in zip(("sdr", "isr", "sir", "sar"), theirs, strict=True):
        diff = np.abs(getattr(ours, name).numpy() - ref)
        assert diff.max() < 0.01, (name, diff.max())


def _tonal(seconds: float = 4.0) -> np.ndarray:
    """A centre-panned kick, a sine bass, a mono-centre voice and a pad: both channels of every
    stem identical, so the references are rank-deficient."""
    t = np.arange(int(seconds * SR)) / SR
    beat = (t * 2) % 1
    voice = np.sin(2 * np.pi * 220 * t + 3 * np.sin(2 * np.pi * 5 * t)) * np.sin(np.pi * t / 2) ** 2
    stems = (np.sin(2 * np.pi * 50 * t * np.exp(-beat * 3)) * np.exp(-beat * 12),
             np.sin(2 * np.pi * 55 * t), voice,
             sum(np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0)) / 3)
    return np.stack([np.stack([x, x], -1) for x in stems])


def _leaky(refs: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(5)
    return 0.8 * refs + 0.1 * refs.sum(0)[None] + 0.01 * rng.standard_normal(refs.shape)


def test_rank_deficient_references_are_regularised_stably_and_said(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Identical channels and pure tones: the filters are fitted with a loading, every value is
    finite and the scores say so; a third or three times that loading moves no value by more
    than 0.7 dB (without it they swing by tens of dB, as museval's do); SDR, which needs no
    filter, is untouched."""
    refs = _tonal()
    ests = _leaky(refs)
    scores = bss_eval(refs, ests, window=SR, hop=SR)
    assert scores.loading == distortion.LOADING[0] and "rank-deficient" in scores.caveat
    for name in ("sdr", "isr", "sir", "sar"):
        assert np.isfinite(getattr(scores, name).numpy()).all(), name
    assert np.allclose(scores.sdr.numpy(), _simple_sdr_all(refs, ests), atol=1e-9)
    for factor in (1 / 3, 3):
        monkeypatch.setattr(distortion, "LOADING", (distortion.LOADING[0] * factor,))
        other = bss_eval(refs, ests, window=SR, hop=SR)
        for name in ("isr", "sir", "sar"):
            moved = np.abs(getattr(other, name).numpy() - getattr(scores, name).numpy())
            assert moved.max() < 0.7, (factor, name, moved.max())


def _simple_sdr_all(refs: np.ndarray, ests: np.ndarray) -> np.ndarray:
    return np.stack([_simple_sdr(r, e) for r, e in zip(refs, ests, strict=True)])


def test_well_conditioned_references_need_no_loading() -> None:
    scores = bss_eval(_sources(2.0), _leaky(_sources(2.0)), window=SR, hop=SR)
    assert scores.loading == 0.0 and scores.caveat == ""


def test_a_silent_stem_is_undefined_everywhere_as_in_museval() -> None:
    """A stem silent over the whole track: every frame has a silent reference, so every value
    of every source is undefined (NaN), museval's convention; found without a dense solve."""
    refs = _sources(2.0)
    refs[2] = 0.0
    scores = bss_eval(refs, _leaky(refs), window=SR, hop=SR)
    assert np.isnan(scores.sdr.numpy()).all() and np.isnan(scores.sar.numpy()).all()
    assert scores.loading > 0


def _direct_correlations(x: np.ndarray, y: np.ndarray, taps: int) -> np.ndarray:
    """r[i, j, k] = Σ_t x_i(t + k) · y_j(t), rows of [signals, n], summed by hand."""
    n = x.shape[1]
    return np.stack([x[:, k:] @ y[:, : n - k].T for k in range(taps)], axis=-1)


def test_block_correlations_match_direct_sums(monkeypatch: pytest.MonkeyPatch) -> None:
    # small blocks and groups, and a length that is no multiple of either: every block
    # boundary, a partial group and the zero padding past the end are exercised
    monkeypatch.setattr(correlations, "CORR_NFFT", 64)
    monkeypatch.setattr(correlations, "CORR_GROUP", 3)
    rng = np.random.default_rng(3)
    ref, est = rng.standard_normal((2, 3, 1001, 2))
    both = torch.as_tensor(np.stack([ref, est]))  # est is read at a storage offset
    p, q = correlations.correlations(both[0], both[1], 16)
    x = ref.transpose(0, 2, 1).reshape(6, -1)  # rows ordered (source, channel)
    e = est.transpose(0, 2, 1).reshape(6, -1)
    assert np.allclose(p.numpy(), _direct_correlations(x, x, 16), atol=1e-10)
    assert np.allclose(q.numpy(), _direct_correlations(e, x, 16), atol=1e-10)


def test_block_levinson_matches_a_dense_solve() -> None:
    rng = np.random.default_rng(4)
    signals = rng.standard_normal((3, 400))
    signals[1] += 0.5 * np.roll(signals[0], 2)  # correlated channels
    p = _direct_correlations(signals, signals, 24)
    r = p.transpose(2, 0, 1)  # R(k)[i, j] = r_ij(k)
    d = rng.standard_normal((24, 3, 2))
    dense = np.linalg.solve(distortion.gram(p, 24), d.transpose(1, 0, 2).reshape(72, 2))
    x = distortion.block_levinson(r, d)
    assert x is not None
    assert np.allclose(x.transpose(1, 0, 2).reshape(72, 2), dense, atol=1e-9)
    batched = distortion.block_levinson(np.stack([r, r]), np.stack([d, 2 * d]))
    assert batched is not None and np.allclose(batched[1], 2 * x, atol=1e-9)


def test_block_levinson_is_refined_when_ill_conditioned() -> None:
    """The inverse formed from the predictors loses accuracy with the square of the condition
    number (here about 3e7, as for tones over a faint noise floor): unrefined, the residual
    T x − d is 3e-5 of d; refined on it, 3e-10, as a dense solve's."""
    rng = np.random.default_rng(8)
    t = np.arange(4000)
    tones = np.stack([np.sin(0.05 * t), np.sin(0.05 * t + 0.3), np.sin(0.11 * t),
                      np.sin(0.013 * t)])
    signals = tones + 1e-3 * rng.standard_normal(tones.shape)
    p = _direct_correlations(signals, signals, 32)
    g = distortion.gram(p, 32)
    assert np.linalg.cond(g) > 1e7
    d = rng.standard_normal((32, 4, 2))
    x = distortion.block_levinson(p.transpose(2, 0, 1), d)
    assert x is not None
    rhs = d.transpose(1, 0, 2).reshape(128, 2)
    residual = g @ x.transpose(1, 0, 2).reshape(128, 2) - rhs
    assert np.abs(residual).max() < 1e-8 * np.abs(rhs).max()


def test_block_levinson_refuses_an_indefinite_matrix() -> None:
    r = np.zeros((4, 2, 2))
    r[0] = np.diag([1.0, -1.0])
    assert distortion.block_levinson(r, np.ones((4, 2, 1))) is None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_gives_the_cpu_values() -> None:
    refs = _sources(3.0, seed=6)
    ests = refs + 0.05 * np.random.default_rng(7).standard_normal(refs.shape)  # no perfect one
    ests[0] = 0.8 * lfilter([1, 0.3], [1], refs[0], axis=0) + 0.05 * refs[2]
    cpu = bss_eval(refs, ests, window=SR, hop=SR)
    gpu = bss_eval(refs, ests, window=SR, hop=SR, device="cuda")
    for name in ("sdr", "isr", "sir", "sar", "si_sdr"):
        a, b = getattr(cpu, name).numpy(), getattr(gpu, name).cpu().numpy()
        assert np.allclose(a, b, atol=1e-6, equal_nan=True), name


def test_dense_fallback_gives_the_recursion_values(monkeypatch: pytest.MonkeyPatch) -> None:
    refs = _sources(2.0, seed=8)
    ests = 0.9 * refs + 0.05 * np.random.default_rng(9).standard_normal(refs.shape)
    recursion = bss_eval(refs, ests, window=SR, hop=SR, taps=64)
    monkeypatch.setattr(distortion, "block_levinson", lambda r, d, floor=0.0: None)
    dense = bss_eval(refs, ests, window=SR, hop=SR, taps=64)
    for name in ("isr", "sir", "sar"):
        a, b = getattr(recursion, name).numpy(), getattr(dense, name).numpy()
        assert np.allclose(a, b, atol=1e-6), name


def test_a_regularised_tracks_caveat_goes_with_its_filter_measures_only() -> None:
    from core.separation.evaluate import _caveat

    rows = [{"track": "a", "caveat": "rank-deficient references"}, {"track": "b"}]
    assert _caveat("sdr", rows) == {} and _caveat("si_sdr", rows) == {}
    assert _caveat("sir", rows) == {"caveat": "1 of 2 tracks: rank-deficient references"}
    assert _caveat("sar", rows[:1]) == {"caveat": "rank-deficient references"}
    assert _caveat("isr", rows[1:]) == {}


def test_frames_in_chunks_give_the_values_of_one_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames go through in chunks (the first beside the filter fit, in a thread): any chunk
    size gives the same values, and numpy's BLAS gets its thread count back."""
    from threadpoolctl import threadpool_info

    before = [(i["filepath"], i["num_threads"]) for i in threadpool_info()]
    refs = _sources()
    ests = _leaky(refs)
    whole = bss_eval(refs, ests, window=SR, hop=SR)
    monkeypatch.setattr(framewise, "FRAME_CHUNK_BYTES", 1)  # one frame a chunk
    chunked = bss_eval(refs, ests, window=SR, hop=SR)
    for name in ("sdr", "isr", "sir", "sar", "si_sdr"):
        assert np.allclose(getattr(whole, name).numpy(), getattr(chunked, name).numpy(),
                           rtol=0, atol=1e-9)
    assert [(i["filepath"], i["num_threads"]) for i in threadpool_info()] == before


def test_the_callers_torch_threads_are_kept() -> None:
    """The frames' first half runs on one thread of torch's in a helper thread; the caller's
    own thread count is not changed by it."""
    before = torch.get_num_threads()
    bss_eval(_sources(1.0), _leaky(_sources(1.0)), window=SR, hop=SR)
    assert torch.get_num_threads() == before


def test_torch_operations_give_numpy_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """On the CPU the FFTs, small products and sums of squares are numpy's; elsewhere (a GPU)
    torch's, which this machine runs here on the CPU: the values agree, and so do the buffers
    kept from one evaluation to the next (filters' spectra written in place, zeros kept)."""
    refs = _sources()
    ests = _leaky(refs)
    by_numpy = bss_eval(refs, ests, window=SR, hop=SR)
    monkeypatch.setattr(kernels, "NUMPY_ON_CPU", False)
    by_torch = bss_eval(refs, ests, window=SR, hop=SR)
    again = bss_eval(refs, ests, window=SR, hop=SR)
    for name in ("sdr", "isr", "sir", "sar", "si_sdr"):
        ours, theirs = getattr(by_numpy, name).numpy(), getattr(by_torch, name).numpy()
        assert np.allclose(ours, theirs, rtol=0, atol=1e-9), name
        assert np.array_equal(theirs, getattr(again, name).numpy()), name
