"""Values from what an unedited script prints: common log shapes, the registry's own patterns,
`nkd capture` on a log, and a real run of a script that knows nothing of nkd."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest
from conftest import Workspace, nkd

from core.capture.patterns import Follower, builtin

# (line, epoch on the line, values, metrics) — real shapes, and lines that must not match
SHAPES = [
    ("Epoch 3/100", 3, {}, []),  # Keras, the epoch header
    ("50/50 [==============================] - 2s 40ms/step - loss: 0.4100 - accuracy: 0.8812"
     " - val_loss: 0.5200 - val_accuracy: 0.8500", None,
     {"train_loss": 0.41, "accuracy": 0.8812, "val_loss": 0.52, "val_accuracy": 0.85}, []),
    ("Epoch 3: 100%|##########| 50/50 [00:01<00:00, 38.12it/s, v_num=0, train_loss=0.410, "
     "val_loss=0.520]", 3, {"train_loss": 0.41, "val_loss": 0.52}, []),  # Lightning
    ("epoch 3 | train 0.41 | val 0.52", 3, {"train_loss": 0.41, "val_loss": 0.52}, []),
    ("[Epoch 3] Train Loss: 0.4100, Val Loss: 0.5200", 3,
     {"train_loss": 0.41, "val_loss": 0.52}, []),  # plain prints
    ("{'loss': 0.41, 'learning_rate': 5e-05, 'epoch': 3.0}", 3,
     {"train_loss": 0.41, "lr": 5e-05}, []),  # Hugging Face Trainer
    ("{'eval_loss': 0.52, 'eval_runtime': 1.2, 'epoch': 3.0}", 3, {"val_loss": 0.52}, []),
    ("Epoch [3/100], Step [100/500], Loss: 0.4100", 3, {"train_loss": 0.41}, []),
    ("epoch=3 train_loss=0.41 val_loss=0.52 lr=0.0001", 3,
     {"train_loss": 0.41, "val_loss": 0.52, "lr": 0.0001}, []),
    ("100%|##########| 391/391 [00:12<00:00, 31.2it/s, loss=0.41]", None,
     {"train_loss": 0.41}, []),  # a tqdm postfix
    ("train | epoch 003 | loss 0.410 | lr 0.0001", 3, {"train_loss": 0.41, "lr": 0.0001}, []),
    ("SDR: 3.2 dB", None, {}, [{"name": "sdr", "value": 3.2}]),
    ("vocals SDR: 4.1 dB", None, {}, [{"name": "sdr", "value": 4.1, "stem": "vocals"}]),
    ("Accuracy: 93.1%", None, {}, [{"name": "accuracy", "value": pytest.approx(0.931)}]),
    ("Epoch 12 - Train loss 0.3 - Val loss 0.4", 12, {}, []),  # no separator: not guessed
    ("Epoch 4, val_loss: 0.3120, val_sdr: 5.77", 4, {"val_loss": 0.312, "val_sdr": 5.77}, []),
    # lines that must not match
    ("Saving checkpoint to checkpoints/crnn_large_final_tune_20251227_171118_best.pth",
     None, {}, []),
    ("Loading data from data/train (150 tracks)", None, {}, []),
    ("2025-12-27 17:11:18 INFO starting run 2 of 5", None, {}, []),
    ("Using device: cuda:0", None, {}, []),
    ("Traceback (most recent call last):", None, {}, []),
    ("Epoch 00003: val_loss improved from 0.56000 to 0.52000, saving model to best.h5", 3,
     {}, []),
    ("batch_size: 8, hidden_size: 512, num_layers: 4", None, {}, []),
]


@pytest.mark.parametrize("line,epoch,values,metrics", SHAPES,
                         ids=[f"shape{i:02d}" for i in range(len(SHAPES))])
def test_log_shapes(line: str, epoch, values, metrics) -> None:
    got = builtin(line)
    assert got.epoch == epoch
    assert got.values == pytest.approx(values) if values else got.values == {}
    assert got.metrics == metrics


def test_an_epoch_spread_over_lines_is_one_record_sent_as_it_grows() -> None:
    now = [0.0]
    follower = Follower(every=0.5, clock=lambda: now[0])
    assert follower.feed("Epoch 1/2") == []
    first = follower.feed("loss: 0.9")
    assert first == [{"type": "epoch", "epoch": 1, "train_loss": 0.9}]
    assert follower.feed("val_loss: 1.1") == []  # within 0.5 s: held back
    now[0] = 1.0
    second = follower.feed("Epoch 2/2")  # the next epoch sends the last one complete
    assert second == [{"type": "epoch", "epoch": 1, "train_loss": 0.9, "val_loss": 1.1}]
    assert follower.feed("loss: 0.5") == []  # held back: epoch 1 was sent just now
    assert follower.flush() == [{"type": "epoch", "epoch": 2, "train_loss": 0.5}]  # the end
    follower.reported_itself = True  # an @nkd epoch came: patterns step aside
    assert follower.feed("Epoch 3/3 loss: 0.1") == []


def test_own_patterns_and_builtins_off() -> None:
    follower = Follower(builtins=False, patterns=[r"^it (?P<epoch>\d+) cost (?P<train_loss>\S+)",
                                                  r"(?P<name>\w+)_score=(?P<value>\S+)"],
                        every=0.0)
    assert follower.feed("Epoch 1/3 loss: 0.5") == []  # built-ins are off
    assert follower.feed("it 2 cost 0.25") == [{"type": "epoch", "epoch": 2, "train_loss": 0.25}]
    assert follower.feed("dev_score=0.7")[-1]["dev"] == 0.7


def test_nkd_capture_shows_what_a_log_would_record(
    ws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "train.log"
    log.write_text("Epoch 1/2\n - loss: 0.5 - val_loss: 0.6\nEpoch 2/2\n - loss: 0.4 - "
                   "val_loss: 0.5\nvocals SDR: 4.1 dB\n")
    capsys.readouterr()
    assert nkd(ws, "capture", str(log), "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["epochs"] == {"1": {"train_loss": 0.5, "val_loss": 0.6},
                             "2": {"train_loss": 0.4, "val_loss": 0.5}}
    assert out["metrics"] == [{"name": "sdr", "value": 4.1, "stem": "vocals"}]
    assert nkd(ws, "capture", str(tmp_path / "nope.log")) == 2


UNEDITED = '''
import argparse, time
ap = argparse.ArgumentParser()
ap.add_argument("--epochs", type=int, default=3)
args = ap.parse_args()
for epoch in range(1, args.epochs + 1):
    print(f"Epoch {epoch}/{args.epochs}", flush=True)
    time.sleep(0.05)
    print(f"Train Loss: {1 / epoch:.4f}, Val Loss: {1 / epoch + 0.1:.4f}", flush=True)
print("Test SDR: 5.77 dB", flush=True)
'''


def test_a_script_nobody_edited_is_charted(ws: Workspace, tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(UNEDITED)
    ws.registry.write_text(ws.registry.read_text() + (
        f'\n[experiments.unedited]\ncommand = ["{sys.executable}", "{script}", "--epochs", '
        f'"{{epochs}}"]\nepochs = 3\n'))
    assert nkd(ws, "run", "unedited") == 0
    store = ws.store()
    run_id = store.latest_run("unedited")["id"]
    epochs = store.epochs(run_id)
    assert [(e["epoch"], e["train_loss"], e["val_loss"]) for e in epochs] == [
        (1, 1.0, 1.1), (2, 0.5, 0.6), (3, pytest.approx(0.3333), pytest.approx(0.4333))]
    assert [(m["name"], m["value"], m["split"]) for m in store.metrics(run_id)] == [
        ("sdr", 5.77, "test")]


@pytest.mark.parametrize("new_style", [False, True])
def test_the_event_reader_agrees_with_tensorboards_own(tmp_path: Path, new_style: bool) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    from core.capture.tensorboard import TensorboardWatch

    writer = SummaryWriter(str(tmp_path / "tb"))
    for step in range(1, 6):
        writer.add_scalar("loss/train", 1.0 / step, step, new_style=new_style)
        writer.add_scalar("loss/val", 1.5 / step, step, new_style=new_style)
        writer.add_scalar("lr", 1e-3 * 0.9 ** step, step, new_style=new_style)
    writer.close()
    ours = {e["epoch"]: e for e in TensorboardWatch([tmp_path / "tb"], 0).poll()}
    theirs = EventAccumulator(str(tmp_path / "tb"))
    theirs.Reload()
    tags = theirs.Tags()["tensors" if new_style else "scalars"]
    assert sorted(tags) == ["loss/train", "loss/val", "lr"]
    for tag, key in (("loss/train", "train_loss"), ("loss/val", "val_loss"), ("lr", "lr")):
        if new_style:
            import numpy as np

            want = {e.step: float(np.frombuffer(e.tensor_proto.tensor_content, np.float32)[0])
                    if e.tensor_proto.tensor_content else float(e.tensor_proto.float_val[0])
                    for e in theirs.Tensors(tag)}
        else:
            want = {e.step: e.value for e in theirs.Scalars(tag)}
        assert {step: ours[step][key] for step in want} == pytest.approx(want)


def test_a_damaged_event_file_record_is_skipped_never_read_as_a_value(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One flipped byte inside a scalar's record: that record fails its CRC-32C and is skipped
    with one log line; every other value is read as written. A damaged length stops the file."""
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    from core.capture.tensorboard import TensorboardWatch, masked_crc

    assert masked_crc(b"") == 0xA282EAD8  # TFRecord's mask of CRC-32C(b"") = 0
    writer = SummaryWriter(str(tmp_path / "tb"))
    for step in range(1, 6):
        writer.add_scalar("loss/train", 0.5 + step, step)
    writer.close()
    path = next((tmp_path / "tb").glob("events.out.tfevents.*"))
    data = bytearray(path.read_bytes())
    value = struct.pack("<f", 3.5)  # step 3's value, inside its record
    at = data.find(value)
    assert at > 0
    data[at + 1] ^= 0x40  # one bit: read unchecked, 3.5 would become another number
    path.write_bytes(bytes(data))
    got = {e["epoch"]: e["train_loss"] for e in TensorboardWatch([tmp_path / "tb"], 0).poll()}
    assert got == {1: 1.5, 2: 2.5, 4: 4.5, 5: 5.5}
    out = capsys.readouterr().out
    assert out.count("fails its checksum") == 1 and path.name in out

    data[8] ^= 0x01  # the first record's length checksum
    path.write_bytes(bytes(data))
    assert TensorboardWatch([tmp_path / "tb"], 0).poll() == []
    assert "the rest of the file is not read" in capsys.readouterr().out


TB_SCRIPT = '''
import sys, time
from torch.utils.tensorboard import SummaryWriter
writer = SummaryWriter(f"tb_logs/{sys.argv[1]}")
for epoch in range(1, 4):
    time.sleep(0.4)
    writer.add_scalar("Loss/train", 1.0 / epoch, epoch)
    writer.add_scalar("Loss/val", 1.2 / epoch, epoch)
    writer.flush()
writer.close()
'''


def test_a_summary_writer_script_is_followed(ws: Workspace, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    script = tmp_path / "tb_train.py"
    script.write_text(TB_SCRIPT)
    ws.registry.write_text(ws.registry.read_text() + (
        f'\n[experiments.tb]\ncommand = ["{sys.executable}", "{script}", "{{exp_name}}"]\n'
        f'params = {{ exp_name = "tb1" }}\ntensorboard_dir = "tb_logs/{{exp_name}}"\n'))
    assert nkd(ws, "run", "tb") == 0
    store = ws.store()
    epochs = store.epochs(store.latest_run("tb")["id"])
    assert [(e["epoch"], e["train_loss"], e["val_loss"]) for e in epochs] == [
        (1, 1.0, pytest.approx(1.2)), (2, 0.5, pytest.approx(0.6)),
        (3, pytest.approx(1 / 3), pytest.approx(0.4))]


def test_step_records_give_progress_at_most_every_two_seconds(ws: Workspace,
                                                               tmp_path: Path) -> None:
    """A script that prints `@nkd {"step": k, "steps": n}` for each of 3,000 batches: a few
    progress events (rate-limited), the last step always among them, the run's row at it; a
    bad step record is one refused line."""
    script = tmp_path / "steps.py"
    script.write_text(
        "import json, time\n"
        "print('@nkd {\"step\": \"x\"}', flush=True)\n"
        "for k in range(1, 3001):\n"
        "    print('@nkd ' + json.dumps({'step': k, 'steps': 3000}), flush=True)\n"
        "    time.sleep(0.0005)\n"
        "print('@nkd ' + json.dumps({'epoch': 1, 'train_loss': 0.5}), flush=True)\n")
    ws.registry.write_text(ws.registry.read_text() + (
        f'\n[experiments.steps]\ncommand = ["{sys.executable}", "{script}"]\n'))
    assert nkd(ws, "run", "steps") == 0
    store = ws.store()
    row = store.latest_run("steps")
    assert (row["step"], row["steps"]) == (3000, 3000)
    run_dir = ws.root / "runs" / row["id"]
    progress = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()
                if '"progress"' in line]
    assert 1 <= len(progress) <= 10 and progress[-1]["step"] == 3000
    assert "refused @nkd record ('step' must be an integer" in (run_dir / "output.log").read_text()


def test_a_checkpoint_left_by_the_run_just_before_is_not_this_runs(tmp_path: Path) -> None:
    """The previous run of the same experiment wrote its best file a moment ago, inside the
    watch's second of clock slack: it is not this run's checkpoint; this run's own file is,
    and so is the old file once this run rewrites it."""
    import time

    from core.capture.checkpoints import CheckpointWatch

    saved = tmp_path / "saved_models"
    saved.mkdir()
    old = saved / "own_20260101_120000_best.pth"
    old.write_bytes(b"previous run")
    watch = CheckpointWatch(["saved_models/own_*_best.pth"], {}, tmp_path, tmp_path / "keep",
                            "none", since=time.time() - 1.0)
    assert watch.poll(final=True) == []
    new = saved / "own_20260101_120005_best.pth"
    new.write_bytes(b"this run")
    assert [p.name for p, _ in watch.poll(final=True)] == [new.name]
    old.write_bytes(b"rewritten by this run")
    assert [p.name for p, _ in watch.poll(final=True)] == [old.name]


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1 << 16])
def test_output_is_cut_into_lines_as_a_text_pipe_would(monkeypatch: pytest.MonkeyPatch,
                                                       chunk: int) -> None:
    """Lines end at "\\n", "\\r\\n" or a lone "\\r" (universal newlines, as a text-mode pipe
    reads them), however the reads split the bytes, a multi-byte character included; bytes
    that are not UTF-8 are replaced; the last line may lack its newline."""
    import io
    import os

    from core.capture import output

    data = b"epoch 1\r\nbar 10%\rbar 20%\r\n@nkd {\"epoch\": 2}\n" + "한국어\n".encode()
    data += b"bad \xff byte\n" + b"last"
    expected = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="replace").readlines()
    read_fd, write_fd = os.pipe()
    os.write(write_fd, data)
    os.close(write_fd)
    monkeypatch.setattr(output, "CHUNK", chunk)
    got: list[list[str] | None] = []
    output.read_lines(read_fd, got.append)
    os.close(read_fd)
    assert got[-1] is None and all(part for part in got[:-1])
    assert [line for part in got[:-1] for line in part] == expected
    assert expected[1] == "bar 10%\n" and expected[-1] == "last"


def test_a_line_longer_than_a_chunk_is_read_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """A line spread over many reads (a script's long JSON dump) comes out as one line, and the
    lines after it as they were."""
    import os
    import threading

    from core.capture import output

    long = "x" * 200_000
    data = f"first\n{long}\nafter\r\nlast".encode()
    read_fd, write_fd = os.pipe()
    writer = threading.Thread(target=lambda: (os.write(write_fd, data), os.close(write_fd)))
    writer.start()
    monkeypatch.setattr(output, "CHUNK", 1000)
    got: list[list[str] | None] = []
    output.read_lines(read_fd, got.append)
    writer.join()
    os.close(read_fd)
    assert [line for part in got[:-1] for line in part] == ["first\n", long + "\n", "after\n",
                                                             "last"]
