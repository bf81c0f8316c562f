"""The worker's one reporter: every event goes to runs/<id>/events.jsonl (flushed) and the store.

The file is the durable record and is written first; the store is an index of it. Neither a full
disk, a read-only folder nor a replaced database stops the run: what cannot be written is said
once in output.log, and the final status carries it. A final status the file cannot take is never
claimed by the store: it records the run `lost`, with the end it meant and why (`end_unrecorded`).
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.store import Store
from core.store.events import FINAL, BadEvent
from core.store.events import event as declared
from core.util.names import open_append, run_path

RESERVE_NAME = ".nkd-reserve"
RESERVE_BYTES = 1 << 20

# json.dumps(event, sort_keys=True), without making an encoder for each event (a script may
# print thousands of records a second)
_ENCODE = json.JSONEncoder(sort_keys=True).encode


class Reporter:
    """Log dicts for a run. The JSONL file is the durable record; the store is an index of it."""

    def __init__(self, run_id: str, run_dir: Path, store: Store | None) -> None:
        self.run_id = run_id
        self.run_dir = run_dir
        self.store = store
        self.write_errors: list[str] = []  # one entry per distinct failure, for the final status
        path = run_path(run_dir, "events.jsonl")
        self._fd = open_append(path)
        self._mend_torn_line(path)
        self._reserve: Path | None = None
        self._torn = False  # the last line written was cut short by the disk
        self._batch: list[tuple[dict[str, Any], bytes]] | None = None  # inside `batch()`

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Events made inside are recorded together at its end, in order: their lines in one
        write to events.jsonl, then one transaction in the store (a script printing thousands
        of records a second). A final status is never held back."""
        self._batch = []
        try:
            yield
        finally:
            held, self._batch = self._batch, None
            if held:
                self._record_held(held)

    def _record_held(self, held: list[tuple[dict[str, Any], bytes]]) -> None:
        try:
            self._write(b"".join(line for _, line in held), False)
        except OSError as exc:  # the store still gets them; `nkd reindex` cannot, so say so
            self.failed("events.jsonl", exc)
        if self.store is None:
            return
        if self.store.replaced():
            self._reopen()  # its replay holds these events too: they are in the file
            return
        try:
            for exc in self.store.apply_many(self.run_id, [event for event, _ in held]):
                print(f"nkd: {self.run_id}: event not recorded ({exc})", file=sys.stderr,
                      flush=True)
        except Exception:  # one at a time, with each event's own handling of what fails
            for event, _ in held:
                self._apply(event)

    def reserve(self, size: int = RESERVE_BYTES) -> None:
        """Set disk space aside for the final status: on a full disk it is freed just before
        that status is written, so the run's end is recorded even when nothing else fits."""
        path = run_path(self.run_dir, RESERVE_NAME)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
            try:
                os.posix_fallocate(fd, 0, size)
            finally:
                os.close(fd)
            self._reserve = path
        except (OSError, AttributeError):
            path.unlink(missing_ok=True)

    def _release_reserve(self) -> bool:
        if self._reserve is None:
            return False
        path, self._reserve = self._reserve, None
        try:
            path.unlink(missing_ok=True)
        except OSError:
            return False  # a folder turned read-only: nothing to free, nothing to clean
        return True

    def _mend_torn_line(self, path: Path) -> None:
        """A writer killed mid-line leaves no newline at the end: start on a fresh line, so the
        next event is not glued onto the torn one."""
        try:
            with open(path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                if fh.tell() == 0:
                    return
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    os.write(self._fd, b"\n")
        except OSError as exc:
            self.failed("events.jsonl", exc)

    def failed(self, what: str, exc: BaseException) -> None:
        """Note a write that failed, once per kind; the final status will carry it."""
        reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0] or type(exc).__name__
        message = f"{what}: {reason}"
        if message not in self.write_errors:
            self.write_errors.append(message)
            print(f"nkd: {self.run_id}: cannot write {message}", file=sys.stderr, flush=True)

    def event(self, event: dict[str, Any]) -> dict[str, Any]:
        event = {"t": time.time(), **event}
        if event.get("type") == "checkpoint" and "bytes" not in event:  # its size, read once
            try:
                event["bytes"] = os.stat(event["path"]).st_size
            except (OSError, KeyError, TypeError):
                pass
        if event.get("type") == "status" and event.get("status") in FINAL and self.write_errors:
            said = [event["error"]] if event.get("error") else []
            event["error"] = "; ".join(said + self.write_errors)[:8000]
        final = event.get("type") == "status" and event.get("status") in FINAL
        line = (_ENCODE(event) + "\n").encode("utf-8")
        if self._batch is not None:
            if not final:
                self._batch.append((event, line))
                return event
            held, self._batch = self._batch, []  # what came before it is recorded before it
            self._record_held(held)
        try:
            self._write(line, final)
        except OSError as exc:  # the store still gets it; `nkd reindex` cannot, so say so
            self.failed("events.jsonl", exc)
            if final:  # but never an end the record lacks: the store says why it is missing
                self._end_unrecorded(event, exc)
                self._release_reserve()
                return event
        self._apply(event)
        if final:
            self._release_reserve()
        return event

    def _write(self, line: bytes, final: bool) -> None:
        if self._torn:  # a line the disk cut short before: start this one on a fresh line
            line = b"\n" + line
        try:
            self._write_all(line)
        except OSError as exc:
            if not (final and exc.errno == errno.ENOSPC and self._release_reserve()):
                raise
            self._write_all((b"\n" if self._torn else b"") + line)

    def _write_all(self, data: bytes) -> None:
        """All of `data`, or OSError: a full disk may take part of a line and refuse the rest;
        that part is left torn (`EventLog` skips it) and the next line starts afresh."""
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._fd, view):]
            except OSError:
                self._torn = len(view) < len(data) or self._torn
                raise
        self._torn = False

    def _apply(self, event: dict[str, Any]) -> None:
        if self.store is None:
            return
        if self.store.replaced():
            self._reopen()  # its replay holds this event too: it is already in the file
            return
        try:
            self.store.apply(self.run_id, event)
        except sqlite3.OperationalError as exc:
            final = event.get("type") == "status" and event.get("status") in FINAL
            if final and "full" in str(exc) and self._release_reserve():
                try:
                    self.store.apply(self.run_id, event)
                    return
                except Exception as again:
                    exc = again  # type: ignore[assignment]
            self.failed(f"the store {self.store.path.name}", exc)
        except BadEvent as exc:
            print(f"nkd: {self.run_id}: event not recorded ({exc})", file=sys.stderr, flush=True)
        except Exception as exc:  # the JSONL line is kept; `nkd reindex` restores the row
            self.failed(f"the store {self.store.path.name}", exc)

    def _end_unrecorded(self, event: dict[str, Any], exc: OSError) -> None:
        if self.store is None:
            return  # a compute node: its login side finds the job ended without an end
        if self.store.replaced():
            self._reopen()
        reason = exc.strerror or str(exc) or type(exc).__name__
        try:
            self.store.end_unrecorded(self.run_id, event, reason)
        except Exception as again:
            self.failed(f"the store {self.store.path.name}", again)

    def _reopen(self) -> None:
        """The database was deleted or replaced (reindex moved a broken one aside): write to
        the new one, after replaying this run's events into it so nothing written meanwhile is
        missing. While there is none, the events file alone records the run."""
        assert self.store is not None
        path = self.store.path
        if not path.is_file():
            return
        try:
            fresh = Store(path)
            fresh.reindex(self.run_dir.parent, only=self.run_id)
        except Exception as exc:
            self.failed(f"the store {path.name}", exc)
            return
        self.store.close()
        self.store = fresh

    def emit(self, kind: str, **fields: Any) -> dict[str, Any]:
        """An event of a declared kind (core.store.events.EVENTS), checked as it is made. One
        the declaration refuses (a NaN loss) is said in output.log, never written, and never
        ends the run."""
        try:
            return self.event(declared(kind, **fields))
        except BadEvent as exc:
            print(f"nkd: {self.run_id}: {kind} event not recorded ({exc})", file=sys.stderr,
                  flush=True)
            return {"type": kind, **fields}

    def status(self, status: str, **fields: Any) -> None:
        self.event({"type": "status", "status": status, **fields})

    def epoch(self, epoch: int, **values: Any) -> None:
        self.event({"type": "epoch", "epoch": epoch, **values})

    def metric(self, name: str, value: float, **where: Any) -> None:
        self.event({"type": "metric", "name": name, "value": float(value), **where})

    def checkpoint(self, path: str, role: str, **fields: Any) -> None:
        self.event({"type": "checkpoint", "path": path, "role": role, **fields})

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._release_reserve()

    def reopen(self) -> None:
        """Write again after close (one more status after a failed requeue)."""
        self._fd = open_append(run_path(self.run_dir, "events.jsonl"))


def record(run_id: str, run_dir: Path, store: Store | None, kind: str, /,
           **fields: Any) -> dict[str, Any]:
    """One event of a declared kind for a run, from outside its worker (a launch, an action,
    the queue): checked, written to events.jsonl and the store, and the file closed again."""
    with Reporter(run_id, run_dir, store) as reporter:
        return reporter.event(declared(kind, **fields))
