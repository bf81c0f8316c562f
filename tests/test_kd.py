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


def _kd_run(ws, run_id: str, alpha: float, seed: int, accuracy: float, t: float) -> None:
    from core.store.reporter import Reporter

    store = ws.store()
    run_dir = ws.root / "runs" / run_id
    run_dir.mkdir(parents=True)
    params = {"recipe": "noise.hybrid_kd", "alpha": alpha, "kd_temperature": 4.0, "seed": seed,
              "data": "noise_fine", "teacher": "kd_teacher", "classes": {"a": ["a"]},
              "description": "twin" if alpha == 0 else "kd"}
    with Reporter(run_id, run_dir, store) as rep:
        rep.event({"type": "run", "experiment": run_id.rsplit("_", 2)[0],
                   "recipe": "noise.hybrid_kd", "params": params, "t": t})
        rep.status("running", t=t)
        rep.metric("accuracy", accuracy, split="test")
        rep.status("finished", t=t + 1)
    store.close()


def test_compare_shows_a_kd_run_beside_its_no_kd_twin(ws, capsys) -> None:
    """The twin is the finished run with alpha 0 and every other setting the same, its seed
    included; a run without one shows no column."""
    from conftest import nkd

    _kd_run(ws, "mark2.5.no_kd_20260101_100000", 0.0, 1, 0.75, 1.0e9)
    _kd_run(ws, "mark2.5.no_kd_20260101_110000", 0.0, 2, 0.95, 1.0e9 + 10)  # another seed
    _kd_run(ws, "mark2.5_20260101_120000", 0.7, 1, 0.80, 1.0e9 + 20)
    capsys.readouterr()
    assert nkd(ws, "compare", "mark2.5_20260101_120000", "mark2.5.no_kd_20260101_100000") == 0
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if line.startswith("Δ vs no-KD twin"))
    assert "+0.05" in row
    assert nkd(ws, "compare", "mark2.5.no_kd_20260101_100000",
               "mark2.5.no_kd_20260101_110000") == 0
    assert "no-KD twin" not in capsys.readouterr().out


TEACHERS = """
[data.clips]
root = "clips"
kind = "noise"

[experiments.t]
recipe = "noise.teacher"
classes = ["a", "b"]
data = "clips"
text_model = "fixed"

[experiments.kd]
recipe = "noise.hybrid_kd"
teacher = "t"
data = "clips"
classes = { a = ["a"], other = ["b"] }

[experiments.sl]
recipe = "noise.soft_labels"
teacher = "t"
data = "clips"
"""


def test_a_student_whose_classes_its_teacher_cannot_score_is_refused_at_launch(ws) -> None:
    from core.errors import RunError
    from core.noise.launch_checks import check
    from core.registry import load_registry
    from core.store.reporter import Reporter

    ws.registry.write_text(TEACHERS)
    store = ws.store()
    run_dir = ws.root / "runs" / "t_20260101_120000"
    run_dir.mkdir(parents=True)
    with Reporter("t_20260101_120000", run_dir, store) as rep:
        rep.event({"type": "run", "experiment": "t", "recipe": "noise.teacher",
                   "params": {"classes": ["a", "b"], "text_model": "fixed"}})
        rep.status("finished")
    store.close()
    registry = load_registry(ws.registry)
    store = ws.store()
    check(registry, registry.resolve("kd"), store)  # a and b: the teacher's own
    with pytest.raises(RunError, match=r"key 'teacher': teacher run t_20260101_120000 knows "
                                       r"only a, b \(fixed class embeddings.*cannot score c"):
        check(registry, registry.resolve("kd", ['classes={ a = ["a"], other = ["c"] }']), store)
    with pytest.raises(RunError, match=r"key 'classes': b, a is not teacher run "
                                       r"t_20260101_120000's class order \(a, b\)"):
        check(registry, registry.resolve("sl", ['classes=["b", "a"]']), store)
    check(registry, registry.resolve("sl", ['classes=["a", "b"]']), store)
    store.close()
