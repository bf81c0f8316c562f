"""Mini-batches of in-memory tensors on the training device, as sized epochs; and batches made
a step ahead in a thread (`Prefetched`), so reading them overlaps the model's step."""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Iterable, Iterator, Sized
from typing import Any

import torch

Batch = Any
RESIDENT_BYTES = 1 << 30  # data smaller than this lives on the GPU for the whole run


class Batcher:
    """Mini-batches of in-memory tensors on the training device.

    Small data moves to the GPU once; larger data stays in pinned host memory and each batch is
    gathered into a pinned buffer and copied asynchronously. On the CPU batches are plain slices.
    """

    def __init__(self, tensors: dict[str, torch.Tensor], batch_size: int, device: torch.device):
        self.n = next(iter(tensors.values())).shape[0]
        self.batch_size = max(1, batch_size)
        self.device = device
        size = sum(t.numel() * t.element_size() for t in tensors.values())
        self.resident = device.type != "cuda" or size <= RESIDENT_BYTES
        if self.resident:
            self.tensors = {k: t.to(device) for k, t in tensors.items()}
        else:
            self.tensors = {k: t.pin_memory() for k, t in tensors.items()}

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def batches(self, generator: torch.Generator | None = None) -> Epoch:
        """One pass over the data (shuffled with `generator`); it knows its number of batches."""
        return Epoch(self._batches(generator), len(self))

    def _batches(
        self, generator: torch.Generator | None = None
    ) -> Iterator[dict[str, torch.Tensor]]:
        order = (
            torch.randperm(self.n, generator=generator)
            if generator is not None
            else torch.arange(self.n)
        )
        for start in range(0, self.n, self.batch_size):
            idx = order[start : start + self.batch_size]
            if self.resident:
                idx = idx.to(self.device)
                yield {k: t.index_select(0, idx) for k, t in self.tensors.items()}
            else:
                yield {
                    k: torch.index_select(
                        t,
                        0,
                        idx,
                        out=torch.empty((idx.numel(), *t.shape[1:]), dtype=t.dtype).pin_memory(),
                    ).to(self.device, non_blocking=True)
                    for k, t in self.tensors.items()
                }


class Epoch:
    """An iterator of batches that also says how many there are (for progress and ETA)."""

    def __init__(self, batches: Iterator[Batch], count: int) -> None:
        self._batches, self._count = batches, count

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Batch]:
        return self._batches


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class Prefetched:
    """The batches of an iterable made `depth` ahead in a thread: the next batch is read (file
    reads and numpy, mostly outside the interpreter's lock) while the model trains on this one.
    The same batches in the same order; its length is the wrapped one's; an iteration left
    early (a pause, a stop) ends the thread; an error in it is raised where the batch is used."""

    _END = object()

    def __init__(self, batches: Iterable[Batch], depth: int = 2) -> None:
        self.batches, self.depth = batches, depth

    def __len__(self) -> int:
        assert isinstance(self.batches, Sized)
        return len(self.batches)

    def __iter__(self) -> Iterator[Batch]:
        ready: queue.Queue[Any] = queue.Queue(self.depth)
        stop = threading.Event()

        def put(item: Any) -> bool:
            while not stop.is_set():
                try:
                    ready.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def fill() -> None:
            try:
                for batch in self.batches:
                    if not put(batch):
                        return
                put(self._END)
            except BaseException as exc:  # raised again where the batch is used
                put(_Failed(exc))

        thread = threading.Thread(target=fill, name="nkd-prefetch", daemon=True)
        thread.start()
        try:
            while True:
                item = ready.get()
                if item is self._END:
                    return
                if isinstance(item, _Failed):
                    raise item.exc
                yield item
        finally:
            stop.set()
            thread.join(timeout=5)
