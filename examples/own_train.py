"""A training script shaped like the researcher's own train.py, with nothing of nkd in it:
argparse flags, ordinary prints, and `<exp>_<YYYYMMDD_HHMMSS>_best.pth` checkpoints (a bare
state dict) in its save folder. nkd charts it from its prints and finds its checkpoints by name.

    python examples/own_train.py --exp_name crnn_small --hidden_size 64 --epochs 5 \\
        [--pretrained_path saved_models/crnn_small_20251227_171118_best.pth]
"""

import argparse
import os
import time

import torch

ap = argparse.ArgumentParser()
ap.add_argument("--train_dir", default="data/train")
ap.add_argument("--val_dir", default="data/val")
ap.add_argument("--exp_name", required=True)
ap.add_argument("--hidden_size", type=int, default=64)
ap.add_argument("--num_layers", type=int, default=1)
ap.add_argument("--batch_size", type=int, default=8)
ap.add_argument("--lr", type=float, default=1e-3)
ap.add_argument("--epochs", type=int, default=5)
ap.add_argument("--pretrained_path", default="")
ap.add_argument("--save_dir", default="saved_models")
args = ap.parse_args()

torch.manual_seed(2)
layers = [torch.nn.Linear(16, args.hidden_size), torch.nn.ReLU()]
for _ in range(args.num_layers - 1):
    layers += [torch.nn.Linear(args.hidden_size, args.hidden_size), torch.nn.ReLU()]
model = torch.nn.Sequential(*layers, torch.nn.Linear(args.hidden_size, 4))
if args.pretrained_path:
    model.load_state_dict(torch.load(args.pretrained_path, weights_only=True))
    print(f"Loaded pretrained weights from {args.pretrained_path}")
x, w = torch.randn(512, 16), torch.randn(16, 4)
y = x @ w
xv = torch.randn(128, 16)
yv = xv @ w
opt = torch.optim.Adam(model.parameters(), lr=args.lr)
stamp = time.strftime("%Y%m%d_%H%M%S")
best = float("inf")
os.makedirs(args.save_dir, exist_ok=True)
print(f"Training {args.exp_name}: hidden {args.hidden_size}, layers {args.num_layers}")
for epoch in range(1, args.epochs + 1):
    for i in range(0, len(x), args.batch_size):
        batch = slice(i, i + args.batch_size)
        loss = torch.nn.functional.mse_loss(model(x[batch]), y[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        train = torch.nn.functional.mse_loss(model(x), y).item()
        val = torch.nn.functional.mse_loss(model(xv), yv).item()
    print(f"Epoch {epoch}/{args.epochs} | Train Loss: {train:.4f} | Val Loss: {val:.4f}")
    if val < best:
        best = val
        path = os.path.join(args.save_dir, f"{args.exp_name}_{stamp}_best.pth")
        torch.save(model.state_dict(), path)
        print(f"Saved best model to {path}")
print(f"Best Val Loss: {best:.4f}")
