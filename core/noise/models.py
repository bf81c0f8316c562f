"""Noise models: the CNN audio encoders, the ViLD-text head and the hybrid-KD student.

Inputs are normalised log-mels [B, 1, M, 101]; a longer clip comes as [B, S, 1, M, 101] (several
101-frame windows) and its embeddings or logits are averaged over the windows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

TEACHER_CHANNELS = (32, 64, 128, 256)
STUDENT_CHANNELS = (16, 32, 64, 128)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def _windows(fn, x: torch.Tensor) -> torch.Tensor:
    """Apply `fn` to [B, 1, M, T] or to every window of [B, S, 1, M, T], averaging over windows."""
    if x.dim() == 4:
        return fn(x)
    b, s = x.shape[:2]
    return fn(x.flatten(0, 1)).view(b, s, -1).mean(dim=1)


class AudioEncoder(nn.Module):
    """Conv blocks with pooling -> global average -> linear projection into the text space."""

    def __init__(self, embed_dim: int = 384, channels: tuple[int, ...] = TEACHER_CHANNELS) -> None:
        super().__init__()
        layers, cin = [], 1
        for cout in channels:
            layers += [_block(cin, cout), nn.MaxPool2d(2)]
            cin = cout
        self.features = nn.Sequential(*layers[:-1])  # no pooling after the last block
        self.proj = nn.Linear(cin, embed_dim)

    def _one(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.features(x).mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _windows(self._one, x)


class TextHead(nn.Module):
    """ViLD-text classifier: cosine similarity to class-prompt embeddings over a temperature.

    The text embeddings are a buffer (saved with the head, never trained); an optional learned
    background embedding adds one more logit, which no label targets and predictions ignore.
    """

    def __init__(self, text: torch.Tensor, temperature: float, background: bool = False) -> None:
        super().__init__()
        self.register_buffer("text", F.normalize(text.float(), dim=1))
        self.temperature = float(temperature)
        self.background = nn.Parameter(torch.randn(text.shape[1]) * 0.02) if background else None

    def forward(self, embedding: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [B, C] (plus a last background column when learned); `text` swaps the classes."""
        classes = self.text if text is None else F.normalize(text.to(embedding), dim=1)
        if self.background is not None:
            classes = torch.cat([classes, F.normalize(self.background, dim=0)[None]], dim=0)
        return F.normalize(embedding, dim=1) @ classes.T / self.temperature

    def class_logits(
        self, embedding: torch.Tensor, text: torch.Tensor | None = None
    ) -> torch.Tensor:
        logits = self(embedding, text)
        return logits[:, :-1] if self.background is not None else logits


class FlatStudent(nn.Module):
    """The mark2.5-2.9 student: conv encoder -> flatten -> linear head."""

    def __init__(
        self,
        n_classes: int,
        n_mels: int = 64,
        frames: int = 101,
        channels: tuple[int, ...] = STUDENT_CHANNELS[:3],
    ) -> None:
        super().__init__()
        layers, cin = [], 1
        for cout in channels:
            layers += [_block(cin, cout), nn.MaxPool2d(2)]
            cin = cout
        self.encoder = nn.Sequential(*layers)
        with torch.no_grad():
            flat = self.encoder(torch.zeros(1, 1, n_mels, frames)).numel()
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(flat, n_classes))

    def _one(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _windows(self._one, x)
