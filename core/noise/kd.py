"""The hybrid KD loss of mark2.5-2.9 and the ensemble of teacher and student."""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812


def hybrid_kd_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    labels: torch.Tensor,
    alpha: float,
    temperature: float,
) -> torch.Tensor:
    """alpha·T²·KL(teacher_T || student_T) + (1 − alpha)·CE(student, y), batch mean.

    The T² factor keeps the soft term's gradients on the scale of the hard term's as T grows.
    """
    t = temperature
    soft = F.kl_div(
        F.log_softmax(student / t, dim=1),
        F.log_softmax(teacher / t, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    hard = F.cross_entropy(student, labels)
    return alpha * t * t * soft + (1.0 - alpha) * hard


def embedding_kd_loss(
    student: torch.Tensor, teacher: torch.Tensor, cosine_weight: float = 0.0
) -> torch.Tensor:
    """ViLD-image's distillation: the L1 distance of the student's embedding to the teacher's,
    averaged over every element, plus `cosine_weight` · (1 − cosine similarity), batch mean."""
    loss = F.l1_loss(student, teacher)
    if cosine_weight:
        loss = loss + cosine_weight * (1 - F.cosine_similarity(student, teacher, dim=1)).mean()
    return loss


def group_logits(logits: torch.Tensor, groups: list[list[int]]) -> torch.Tensor:
    """Logits over fine labels -> logits over groups of them (log of the summed probabilities)."""
    return torch.stack([logits[:, g].logsumexp(dim=1) for g in groups], dim=1)


def ensemble(teacher: torch.Tensor, student: torch.Tensor, weight: float, how: str) -> torch.Tensor:
    """Combine class probabilities: weighted mean, or ViLD's geometric form p_T^w · p_S^(1−w)."""
    if how == "geometric":
        p = teacher.clamp_min(1e-12) ** weight * student.clamp_min(1e-12) ** (1 - weight)
        return p / p.sum(dim=1, keepdim=True)
    return weight * teacher + (1 - weight) * student
