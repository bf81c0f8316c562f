"""The one training loop the recipes share, its setup (device, seeds, optimiser, compile),
self-describing checkpoints and the PNG plots beside a run."""
