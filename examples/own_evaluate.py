"""An evaluation script shaped like the researcher's evaluate.py, with nothing of nkd in it: it
loads a checkpoint and prints an SDR per stem and their mean. nkd records them on the lineage
node of the checkpoint it scored (`evaluates = "pretrained"` in the registry)."""

import argparse

import torch

ap = argparse.ArgumentParser()
ap.add_argument("--model_path", required=True)
ap.add_argument("--test_dir", default="data/test")
args = ap.parse_args()

state = torch.load(args.model_path, weights_only=True)
size = sum(t.numel() for t in state.values())
print(f"Evaluating {args.model_path} ({size} parameters) on {args.test_dir}")
scores = {}
for n, stem in enumerate(("bass", "drums", "other", "vocals")):
    scores[stem] = 2.0 + 0.5 * n + (size % 7) / 10  # a stand-in for BSS Eval
    print(f"{stem} SDR: {scores[stem]:.2f} dB")
print(f"Mean SDR: {sum(scores.values()) / len(scores):.2f} dB")
