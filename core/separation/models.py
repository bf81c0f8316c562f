"""Separation models on STFT magnitudes: CRNN, U-Net CRNN (with an optional rhythm head) and the
mask LSTM.

Input: normalised log1p magnitudes [B, 1, 512, T] (the Nyquist bin is dropped on the way in).
Output: one sigmoid mask per stem [B, S, 512, T]; the U-Net's rhythm head also gives per-frame
onset logits [B, T]. Module names are what `freeze` prefixes refer to: encoder, lstm, decoder
(and rhythm for the U-Net).
"""

from __future__ import annotations

import torch
from torch import nn

BINS = 512


def _bilstm(hidden_size: int, num_layers: int, dropout: float) -> nn.LSTM:
    return nn.LSTM(
        hidden_size,
        hidden_size,
        num_layers,
        batch_first=True,
        bidirectional=True,
        dropout=dropout if num_layers > 1 else 0.0,
    )


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())


class CRNN(nn.Module):
    """conv encoder (frequency pooled by 4) -> BiLSTM over time -> linear decoder -> masks."""

    def __init__(
        self,
        stems: int = 4,
        hidden_size: int = 256,
        num_layers: int = 3,
        dropout: float = 0.0,
        channels: int = 16,
    ) -> None:
        super().__init__()
        self.stems = stems
        self.encoder = nn.Sequential(
            _conv(1, channels),
            nn.MaxPool2d((2, 1)),
            _conv(channels, channels),
            nn.MaxPool2d((2, 1)),
        )
        self.encoder_proj = nn.Linear(channels * BINS // 4, hidden_size)  # part of the encoder
        self.lstm = _bilstm(hidden_size, num_layers, dropout)
        self.decoder = nn.Linear(2 * hidden_size, stems * BINS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, f, t = x.shape
        h = self.encoder(x)  # [B, C, F/4, T]
        h = self.encoder_proj(h.flatten(1, 2).transpose(1, 2))  # [B, T, H]
        h, _ = self.lstm(h)
        masks = torch.sigmoid(self.decoder(h))  # [B, T, S*F]
        return masks.view(b, t, self.stems, f).permute(0, 2, 3, 1)


class UNetCRNN(nn.Module):
    """Two-level U-Net over frequency with a BiLSTM bottleneck over time and skip connections,
    plus a rhythm head (Linear -> LayerNorm -> Dropout -> Linear) giving per-frame onset logits."""

    def __init__(
        self,
        stems: int = 4,
        hidden_size: int = 256,
        num_layers: int = 3,
        dropout: float = 0.0,  # off; the registry default (0.4 here) comes from the recipe
        rhythm_head: bool = True,
        channels: int = 16,
    ) -> None:
        super().__init__()
        c = channels
        self.stems = stems
        self.encoder = nn.ModuleList([_conv(1, c), _conv(c, 2 * c)])
        self.pool = nn.MaxPool2d((2, 1))
        bottom = 2 * c * BINS // 4
        self.encoder_proj = nn.Linear(bottom, hidden_size)
        self.lstm = _bilstm(hidden_size, num_layers, dropout)
        self.decoder_lift = nn.Linear(2 * hidden_size, bottom)
        self.decoder_up = nn.ModuleList(
            [
                nn.ConvTranspose2d(2 * c, 2 * c, (2, 1), stride=(2, 1)),
                nn.ConvTranspose2d(c, c, (2, 1), stride=(2, 1)),
            ]
        )
        self.decoder = nn.ModuleList([_conv(4 * c, c), _conv(2 * c, c)])
        self.decoder_out = nn.Conv2d(c, stems, 1)
        self.rhythm = (
            nn.Sequential(
                nn.Linear(2 * hidden_size, hidden_size // 2),
                nn.LayerNorm(hidden_size // 2),
                nn.Dropout(0.4),
                nn.Linear(hidden_size // 2, 1),
            )
            if rhythm_head
            else None
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, _, f, t = x.shape
        s1 = self.encoder[0](x)  # [B, c, F, T]
        s2 = self.encoder[1](self.pool(s1))  # [B, 2c, F/2, T]
        h = self.pool(s2)  # [B, 2c, F/4, T]
        seq, _ = self.lstm(self.encoder_proj(h.flatten(1, 2).transpose(1, 2)))  # [B, T, 2H]
        h = self.decoder_lift(seq).transpose(1, 2).reshape(h.shape)
        h = self.decoder[0](torch.cat([self.decoder_up[0](h), s2], dim=1))  # [B, c, F/2, T]
        h = self.decoder[1](torch.cat([self.decoder_up[1](h), s1], dim=1))  # [B, c, F, T]
        masks = torch.sigmoid(self.decoder_out(h))
        onsets = self.rhythm(seq).squeeze(-1) if self.rhythm is not None else None
        return masks, onsets


class MaskLSTM(nn.Module):
    """Whole-spectrum frames: a linear layer over the 512 bins -> BiLSTM over time, its input
    added back -> two linear layers -> one mask per stem. No convolution over the full
    spectrogram, so it trains several times faster than the CRNNs per step on a CPU, and every
    mask sees every bin of its frame (a pitch's harmonics, a drum hit's whole band)."""

    def __init__(
        self, stems: int = 4, hidden_size: int = 256, num_layers: int = 3, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.stems = stems
        self.encoder = nn.Sequential(nn.Linear(BINS, hidden_size), nn.LayerNorm(hidden_size),
                                     nn.Tanh())
        self.lstm = nn.LSTM(hidden_size, hidden_size // 2, num_layers, batch_first=True,
                            bidirectional=True, dropout=dropout if num_layers > 1 else 0.0)
        self.decoder = nn.Sequential(
            nn.Linear(2 * hidden_size, hidden_size), nn.LayerNorm(hidden_size), nn.ReLU(),
            nn.Linear(hidden_size, stems * BINS),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, f, t = x.shape
        h = self.encoder(x[:, 0].transpose(1, 2))  # [B, T, H]
        seq, _ = self.lstm(h)
        masks = torch.sigmoid(self.decoder(torch.cat([h, seq], dim=-1)))  # [B, T, S*F]
        return masks.view(b, t, self.stems, f).permute(0, 2, 3, 1)


def build(meta: dict) -> nn.Module:
    """The model a checkpoint's meta describes."""
    kind = meta["model"]
    common = dict(
        stems=len(meta["stems"]),
        hidden_size=int(meta["hidden_size"]),
        num_layers=int(meta["num_layers"]),
        dropout=float(meta.get("dropout", 0.0)),
    )
    if kind == "unet_crnn":
        return UNetCRNN(**common, rhythm_head=bool(meta.get("rhythm_head", True)))
    if kind == "mask_lstm":
        return MaskLSTM(**common)
    return CRNN(**common)


def masks_of(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    out = model(x)
    return out if isinstance(out, tuple) else (out, None)


def focal_loss(
    logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, alpha: float = 0.25
) -> torch.Tensor:
    """Binary focal loss (Lin et al.), mean over frames: rare onsets are not drowned out."""
    p = torch.sigmoid(logits)
    ce = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    a_t = alpha * target + (1 - alpha) * (1 - target)
    return (a_t * (1 - p_t) ** gamma * ce).mean()


def load_weights(model: nn.Module, state: dict, where: str) -> None:
    """load_state_dict with a one-line error naming the checkpoint and the first odd keys."""
    missing, unexpected = (
        model.state_dict().keys() - state.keys(),
        state.keys() - model.state_dict().keys(),
    )
    if missing or unexpected:
        from core.errors import RunError

        parts = []
        if missing:
            parts.append(f"missing {', '.join(sorted(missing)[:3])}")
        if unexpected:
            parts.append(f"unexpected {', '.join(sorted(unexpected)[:3])}")
        raise RunError(f"{where}: weights do not fit a {type(model).__name__} ({'; '.join(parts)})")
    for key, tensor in model.state_dict().items():
        if state[key].shape != tensor.shape:
            from core.errors import RunError

            raise RunError(
                f"{where}: key '{key}' has shape {tuple(state[key].shape)}, the model "
                f"needs {tuple(tensor.shape)}"
            )
    model.load_state_dict(state)
