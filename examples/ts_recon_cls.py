"""A researcher-style training script run by nkd as a command experiment (seed 004's shape).

A 1-D conv autoencoder reconstructs 3-channel wearable-sensor windows, and a classifier reads the
reconstruction; the classification loss is switched on after `--ce-warmup` epochs. Data is made
procedurally: six activity classes with their own rhythm, harmonics and channel mix, plus noise.
It reports through `@nkd {json}` lines and stops cleanly on Ctrl-C (SIGINT), saving its state.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F


def nkd(**values: object) -> None:
    print("@nkd " + json.dumps(values), flush=True)


def make_data(n: int, length: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    t = torch.linspace(0, 1, length)
    base = 1.0 + labels.float() * 0.9  # each activity has its own cadence (Hz per window)
    phase = torch.rand(n, 1, generator=g) * 2 * math.pi
    freq = base[:, None] * (1 + 0.05 * torch.randn(n, 1, generator=g))
    wave = torch.sin(2 * math.pi * freq * 4 * t + phase)
    harmonic = torch.sin(4 * math.pi * freq * 4 * t + 2 * phase) * (labels[:, None] % 3) / 3
    mix = torch.stack([torch.ones(n), (labels % 2).float() * 0.8 + 0.2, (labels % 3) / 2.0], 1)
    x = mix[:, :, None] * (wave + harmonic)[:, None, :]
    x = x + 0.25 * torch.randn(n, 3, length, generator=g)
    return x, labels


class ReconClassifier(nn.Module):
    def __init__(self, channels: int = 3, width: int = 32, classes: int = 6) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv1d(channels, width, 5, stride=2, padding=2), nn.GELU(),
            nn.Conv1d(width, width, 5, stride=2, padding=2), nn.GELU(),
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose1d(width, width, 4, stride=2, padding=1), nn.GELU(),
            nn.ConvTranspose1d(width, channels, 4, stride=2, padding=1),
        )
        self.classifier = nn.Sequential(
            nn.Conv1d(channels, width, 7, padding=3), nn.GELU(), nn.AdaptiveAvgPool1d(1),
            nn.Flatten(), nn.Linear(width, classes),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        recon = self.decoder(self.encoder(x))
        return recon, self.classifier(recon)


def save(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    torch.save(state, tmp)
    os.replace(tmp, path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--ce-warmup", type=int, default=5, help="epochs with CE weight 0")
    ap.add_argument("--samples", type=int, default=1200)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", default=os.environ.get("NKD_CHECKPOINT_DIR", "checkpoints/manual"))
    ap.add_argument("--epoch-delay", type=float, default=0.0, help="sleep per epoch (demo pace)")
    args = ap.parse_args()

    stop = {"asked": False}
    signal.signal(signal.SIGINT, lambda *_: stop.update(asked=True))
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    x, y = make_data(args.samples, 128, 6, args.seed)
    split = int(0.8 * len(x))
    train, val = (x[:split], y[:split]), (x[split:], y[split:])
    model = ReconClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    out = Path(args.out)
    best = math.inf
    nkd(epochs_total=args.epochs)
    print(f"training on {split} windows, validating on {len(x) - split}", flush=True)
    for epoch in range(1, args.epochs + 1):
        start = time.time()
        ce_weight = 0.0 if epoch <= args.ce_warmup else 1.0
        model.train()
        perm = torch.randperm(split)
        total = 0.0
        for i in range(0, split, args.batch_size):
            idx = perm[i : i + args.batch_size]
            recon, logits = model(train[0][idx])
            loss = F.mse_loss(recon, train[0][idx]) + ce_weight * F.cross_entropy(
                logits, train[1][idx]
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        model.eval()
        with torch.no_grad():
            recon, logits = model(val[0])
            recon_loss = F.mse_loss(recon, val[0]).item()
            ce = F.cross_entropy(logits, val[1]).item()
            acc = (logits.argmax(1) == val[1]).float().mean().item()
        val_loss = recon_loss + ce  # one definition for every epoch, so epochs compare
        nkd(epoch=epoch, train_loss=total / split, val_loss=val_loss, lr=args.lr,
            recon_loss=recon_loss, ce_loss=ce, val_acc=acc, seconds=time.time() - start)
        state = {"model": model.state_dict(), "epoch": epoch, "val_loss": val_loss}
        save(out / "last.pth", state)
        nkd(checkpoint=str(out / "last.pth"), role="last", epoch=epoch)
        if val_loss < best:
            best = val_loss
            save(out / "best.pth", state)
            nkd(checkpoint=str(out / "best.pth"), role="best", epoch=epoch, value=val_loss)
        if args.epoch_delay:
            time.sleep(args.epoch_delay)
        if stop["asked"]:
            print(f"interrupted after epoch {epoch}; last state saved", flush=True)
            return 0
    nkd(name="accuracy", value=acc, split="val")
    nkd(name="recon_mse", value=recon_loss, split="val")
    return 0


if __name__ == "__main__":
    sys.exit(main())
