"""The distillation losses against an independent computation (Hinton et al.'s formulation and
ViLD-image's L1, by hand in numpy), and the clip each side sees in a hybrid-KD step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.noise.hybrid import kd_views
from core.noise.kd import embedding_kd_loss, hybrid_kd_loss


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _hinton(student, teacher, labels, alpha: float, t: float) -> float:
    """alpha·T²·KL(p_T ‖ p_S) at temperature T + (1 − alpha)·CE at T = 1, batch mean."""
    log_ps, log_pt = _log_softmax(student / t), _log_softmax(teacher / t)
    kl = (np.exp(log_pt) * (log_pt - log_ps)).sum(axis=1).mean()
    ce = -_log_softmax(student)[np.arange(len(labels)), labels].mean()
    return alpha * t * t * kl + (1 - alpha) * ce


@pytest.mark.parametrize(("alpha", "t"), [(0.0, 4.0), (0.7, 4.0), (1.0, 2.0), (0.5, 1.0)])
def test_the_hybrid_loss_is_hintons(alpha: float, t: float) -> None:
    rng = np.random.default_rng(3)
    s, te = rng.normal(0, 3, (8, 5)), rng.normal(0, 3, (8, 5))
    y = rng.integers(0, 5, 8)
    got = hybrid_kd_loss(torch.tensor(s), torch.tensor(te), torch.tensor(y), alpha, t)
    assert float(got) == pytest.approx(_hinton(s, te, y, alpha, t), rel=1e-9)


def test_a_student_equal_to_its_teacher_has_no_soft_loss() -> None:
    z = torch.randn(4, 3)
    assert float(hybrid_kd_loss(z, z, torch.zeros(4, dtype=torch.long), 1.0, 4.0)) == \
        pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("cosine", [0.0, 0.5])
def test_the_embedding_loss_is_vild_images(cosine: float) -> None:
    rng = np.random.default_rng(5)
    s, te = rng.normal(size=(6, 16)), rng.normal(size=(6, 16))
    cos = (s * te).sum(1) / (np.linalg.norm(s, axis=1) * np.linalg.norm(te, axis=1))
    want = np.abs(s - te).mean() + cosine * (1 - cos).mean()
    got = embedding_kd_loss(torch.tensor(s), torch.tensor(te), cosine)
    assert float(got) == pytest.approx(want, rel=1e-9)


def test_teacher_and_student_hear_the_same_augmented_clip_unless_a_key_says_otherwise() -> None:
    waves = torch.randn(4, 16000)
    heard, taught = kd_views("mix2", "mix2", waves, torch.Generator().manual_seed(1), 10.0)
    assert torch.equal(heard, taught) and not torch.equal(heard, waves)  # augment_target both
    heard, taught = kd_views("mix2", "none", waves, torch.Generator().manual_seed(1), 10.0)
    assert torch.equal(taught, waves) and not torch.equal(heard, waves)  # student only (ESKD)
    heard, taught = kd_views("none", "mix2", waves, torch.Generator().manual_seed(1), 10.0)
    assert torch.equal(heard, waves) and not torch.equal(taught, waves)
    heard, taught = kd_views("none", "none", waves, torch.Generator().manual_seed(1), 10.0)
    assert heard is waves and taught is waves
