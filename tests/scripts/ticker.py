"""A stand-in training script for tests: one @nkd epoch line per tick, clean stop on SIGINT."""

import argparse
import json
import os
import signal
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("--epochs", type=int, default=5)
ap.add_argument("--delay", type=float, default=0.05)
ap.add_argument("--fail-at", type=int, default=0)
args = ap.parse_args()

if os.environ.get("NKD_RUN_DIR") and "CUDA_VISIBLE_DEVICES" in os.environ:
    # what GPUs this run was given, for the queue's tests
    with open(os.path.join(os.environ["NKD_RUN_DIR"], "visible.txt"), "w") as fh:
        fh.write(f"{os.environ['CUDA_VISIBLE_DEVICES']} {os.environ.get('CUDA_DEVICE_ORDER')}\n")
stop = {"asked": False}
signal.signal(signal.SIGINT, lambda *_: stop.update(asked=True))
print("@nkd " + json.dumps({"epochs_total": args.epochs}), flush=True)
for epoch in range(1, args.epochs + 1):
    time.sleep(args.delay)
    if epoch == args.fail_at:
        print("Traceback (most recent call last):\nValueError: bad batch", file=sys.stderr)
        sys.exit(3)
    loss = 1.0 / epoch
    print(f"epoch {epoch} done", flush=True)
    print("@nkd " + json.dumps({"epoch": epoch, "train_loss": loss, "val_loss": loss + 0.1}),
          flush=True)
    if stop["asked"]:
        last = os.path.join(os.environ.get("NKD_CHECKPOINT_DIR", "."), "last.pth")
        print("@nkd " + json.dumps({"checkpoint": last, "role": "last", "epoch": epoch}),
              flush=True)
        print("stopped by request", flush=True)
        sys.exit(0)
print("@nkd " + json.dumps({"name": "accuracy", "value": 0.9, "split": "val"}), flush=True)
