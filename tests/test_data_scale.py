"""Real-size data: the prepared-audio cache, streaming segments, and resuming inside an epoch
with DataLoader worker processes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_context

from core.data import audio
from core.data import tracks as data
from core.data.cache import AudioCache
from core.separation.segments import SegmentSet, StepBatches, ValSet, loader
from core.training import checkpoint

STEMS = ("bass", "drums", "other", "vocals")
RATE = 8000


def _tracks(root: Path, count: int = 3, seconds: float = 2.0) -> Path:
    rng = np.random.default_rng(0)
    n = int(seconds * RATE)
    for t in range(count):
        folder = root / f"song_{t}"
        folder.mkdir(parents=True)
        parts = [0.2 * rng.standard_normal((2, n)).astype(np.float32) for _ in STEMS]
        for name, part in zip(STEMS, parts, strict=True):
            audio.write(folder / f"{name}.wav", part, RATE)
        audio.write(folder / "mixture.wav", sum(parts), RATE)
    return root


def test_a_changed_file_is_prepared_again_even_with_its_old_mtime(tmp_path: Path) -> None:
    wav = tmp_path / "a.wav"
    audio.write(wav, np.full((2, 800), 0.25, np.float32), RATE)
    cache = AudioCache(tmp_path / "ws")
    first = cache.prepared(wav, RATE)
    assert first.read().shape == (2, 800) and first.read()[0, 0] == pytest.approx(0.25, abs=1e-4)
    assert cache.prepared(wav, RATE) == first  # reused, not decoded again
    stat = wav.stat()
    audio.write(wav, np.full((2, 800), -0.5, np.float32), RATE)  # same size, new content
    os.utime(wav, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # as `cp -p` would leave it
    second = cache.prepared(wav, RATE)
    assert second.path != first.path
    assert second.read()[1, 10] == pytest.approx(-0.5, abs=1e-4)
    assert cache.prepared(wav, RATE, mono=True).channels == 1


def test_a_damaged_cache_entry_is_made_again(tmp_path: Path) -> None:
    wav = tmp_path / "a.wav"
    audio.write(wav, np.full((1, 800), 0.25, np.float32), RATE)
    cache = AudioCache(tmp_path / "ws")
    entry = cache.prepared(wav, RATE).path
    entry.write_bytes(entry.read_bytes()[:-40])  # torn
    again = cache.prepared(wav, RATE)
    assert again.frames == 800 and again.read()[0, -1] == pytest.approx(0.25, abs=1e-4)


def test_segments_read_back_the_decoded_audio(tmp_path: Path) -> None:
    root = _tracks(tmp_path / "musdb", count=1)
    track = data.prepare(root, "musdb", STEMS, RATE, AudioCache(tmp_path))[0]
    whole = track.load()
    assert whole.stems.shape == (4, 2, 2 * RATE)
    np.testing.assert_array_equal(
        track.mono_stems(100, 50), whole.stems[:, :, 100:150].mean(axis=1)
    )
    assert (track.mono_stems(2 * RATE - 10, 20)[:, 10:] == 0).all()  # zeros past the end


def _batches(dataset: SegmentSet, workers: int, epoch: int, start: int = 0) -> list[dict]:
    sampler = StepBatches(epoch, len(dataset), 4, start)
    return list(loader(dataset, workers, torch.device("cpu"), batch_sampler=sampler))


def test_the_same_seed_gives_the_same_segments_whatever_the_worker_count(tmp_path: Path) -> None:
    root = _tracks(tmp_path / "musdb")
    tracks = data.prepare(root, "musdb", STEMS, RATE, AudioCache(tmp_path))
    params = {"remix_prob": 0.5, "random_gain": True}
    one = SegmentSet(tracks, 2000, params, STEMS, seed=7)
    inline, workers = _batches(one, 0, epoch=1), _batches(one, 2, epoch=1)
    assert len(inline) == -(-len(one) // 4)
    for a, b in zip(inline, workers, strict=True):
        assert torch.equal(a["mix"], b["mix"]) and torch.equal(a["stems"], b["stems"])
    torch.testing.assert_close(inline[0]["mix"], inline[0]["stems"].sum(dim=1))
    again = SegmentSet(tracks, 2000, params, STEMS, seed=7)
    assert torch.equal(_batches(again, 0, epoch=1)[2]["mix"], inline[2]["mix"])
    other_epoch = _batches(one, 0, epoch=2)
    assert not torch.equal(other_epoch[0]["mix"], inline[0]["mix"])
    other_seed = SegmentSet(tracks, 2000, params, STEMS, seed=8)
    assert not torch.equal(_batches(other_seed, 0, epoch=1)[0]["mix"], inline[0]["mix"])
    later = _batches(one, 2, epoch=1, start=2)  # an epoch begun at its third step
    assert torch.equal(later[0]["stems"], inline[2]["stems"])


def test_validation_segments_are_fixed(tmp_path: Path) -> None:
    root = _tracks(tmp_path / "musdb")
    tracks = data.prepare(root, "musdb", STEMS, RATE, AudioCache(tmp_path))
    val = ValSet(tracks, 2000, per_track=4)
    assert len(val) == 12
    first = [val[i]["mix"] for i in range(len(val))]
    assert all(torch.equal(a, val[i]["mix"]) for i, a in enumerate(first))


CUDA = pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device")])


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_resuming_inside_an_epoch_with_loader_workers_is_bit_identical(
    tmp_path: Path, device: str
) -> None:
    """The separation recipe's way of feeding the loop (SegmentSet, two DataLoader workers,
    epochs begun at a step): suspended after step 3 of epoch 2, resumed, it ends with the very
    weights and losses of a run never suspended."""
    from core.runs.control import StopRun
    from core.training.loop import Trainer

    root = _tracks(tmp_path / "musdb")
    tracks = data.prepare(root, "musdb", STEMS, RATE, AudioCache(tmp_path))
    dataset = SegmentSet(tracks, 1000, {"remix_prob": 0.3, "random_gain": True}, STEMS, seed=5)
    val = ValSet(tracks, 1000, per_track=2)

    def trainer(where: Path, resume: bool = False) -> Trainer:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(1000, 32), torch.nn.Dropout(0.2),
                                    torch.nn.Linear(32, 4 * 1000)).to(device)

        def step(batch, train):
            out = model(batch["mix"].to(device)).view(-1, 4, 1000)
            return (out - batch["stems"].to(device)).abs().mean(), batch["mix"].shape[0], {}

        def train_batches(g, epoch=0, start=0):
            return loader(dataset, 2, torch.device(device),
                          batch_sampler=StepBatches(epoch, len(dataset), 4, start))

        return Trainer(run_context(where, resume), "sep", {"model": model}, step, train_batches,
                       lambda: loader(val, 2, torch.device(device), batch_size=4), {},
                       torch.device(device), params={"epochs": 3, "lr": 1e-3, "seed": 1})

    straight = trainer(tmp_path / "a")
    straight.fit()
    first = trainer(tmp_path / "b")
    original, calls = first.step, []

    def step(batch, train):
        if train:
            calls.append(first.epoch)
            if calls.count(1) == 3:
                first.ctx.control.handle("suspend")
        return original(batch, train)

    first.step = step
    with pytest.raises(StopRun):
        first.fit()
    assert checkpoint.load(first.state_path, kind="sep_state")["mid_epoch"]["step"] == 3
    resumed = trainer(tmp_path / "b", resume=True)
    resumed.fit()
    assert resumed.history == straight.history
    a, b = (checkpoint.load(t / "ckpt" / "sep_model.pth")["state_dict"]
            for t in (tmp_path / "a", tmp_path / "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    events = [json.loads(line) for line in
              (tmp_path / "a" / "run" / "events.jsonl").read_text().splitlines()]
    progress = [e for e in events if e["type"] == "progress"]
    assert progress and progress[0]["step"] == 1 and progress[0]["steps"] == -(-len(dataset) // 4)


def test_prefetched_batches_are_the_same_and_stop_with_their_reader() -> None:
    """A step ahead in a thread: the same batches in the same order and its length; left
    early, its thread ends; an error in it is raised where the batch is used."""
    import threading

    from core.data.batches import Prefetched

    assert list(Prefetched(range(10))) == list(range(10)) and len(Prefetched(range(7))) == 7
    it = iter(Prefetched(range(1000), depth=2))
    assert [next(it), next(it)] == [0, 1]
    it.close()  # a pause or a stop leaves the epoch early
    assert not any(t.name == "nkd-prefetch" and t.is_alive() for t in threading.enumerate())

    def broken():
        yield 1
        raise ValueError("a damaged file")

    got = []
    with pytest.raises(ValueError, match="a damaged file"):
        for batch in Prefetched(broken()):
            got.append(batch)
    assert got == [1]
