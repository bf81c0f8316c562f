"""A run's best epoch, kept in its row as epochs are recorded: the rule, written in SQL from
SELECT_BY (the one declaration of which value each select_by compares, and which way is
better), applied epoch by epoch in order.

A script printing thousands of records a second sends them in bursts; one UPDATE per epoch was
a third of what recording each cost. A burst of strictly increasing epochs, none of them the
row's best epoch already (which an epoch recorded again replaces whatever its value), is
therefore recorded with one UPDATE: the same rule applied epoch by epoch keeps the first epoch
of the burst whose score is the best of the burst and better than the row's, and the UPDATE
picks exactly that one (tests/test_store.py compares the two on random bursts)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from core.registry.key import SELECT_BY, SELECT_FALLBACK
from core.registry.keys import KEYS

FIELDS = tuple(sorted({field for field, _ in SELECT_BY.values()}))  # an epoch's values read
BURST = 8  # epochs from which a burst is recorded with one UPDATE


def _value(name: str, value_of: Callable[[str], str]) -> str:
    """The score of an epoch under select_by `name`, in SQL: its value of that field, or of
    the field's fallback; value_of(field) is how the epoch's value is read."""
    field = SELECT_BY[name][0]
    fallback = SELECT_FALLBACK.get(name)
    if fallback:
        return f"coalesce({value_of(field)}, {value_of(SELECT_BY[fallback][0])})"
    return value_of(field)


def _better(name: str, it: str, than: str) -> str:
    return f"({it}) {'>' if SELECT_BY[name][1] else '<'} {than}"


def _rule(value_of: Callable[[str], str]) -> tuple[str, Callable[[str, str], str]]:
    """(the score of an epoch, better(score, than)), in SQL, under the run row's select_by."""
    which = f"coalesce(select_by, '{KEYS['select_by'].default}')"
    score = "CASE " + which + " " + " ".join(
        f"WHEN '{name}' THEN {_value(name, value_of)}" for name in SELECT_BY) + " END"

    def better(it: str, than: str) -> str:
        return "CASE " + which + " " + " ".join(
            f"WHEN '{name}' THEN {_better(name, it, than)}" for name in SELECT_BY) + " END"

    return score, better


def _epoch_sql() -> str:
    """The UPDATE of one epoch: the epoch reached, and the epoch made best when its score is
    better than the best so far (or it is the best epoch, recorded again)."""
    score, better = _rule(lambda field: f":{field}")
    new_best = (f"({score}) IS NOT NULL AND (best_value IS NULL OR best_epoch = :epoch OR "
                f"{better(score, 'best_value')})")
    sets = [f"{column} = CASE WHEN {new_best} THEN {new} ELSE {column} END"
            for column, new in (("best_epoch", ":epoch"), ("best_val_loss", ":val_loss"),
                                ("best_train_loss", ":train_loss"), ("best_value", score))]
    # every SET reads the row as it was, so the four see the same old best
    return (f"UPDATE runs SET epoch = max(coalesce(epoch, 0), :epoch), {', '.join(sets)} "
            "WHERE id = :id")


def _burst_sql(name: str) -> str:
    """The UPDATE of a burst held in temp.nkd_burst, for a run whose select_by is `name`: the
    first of the burst's best-scored epochs, where it is better than the row's best (the epoch
    reached: _REACHED)."""
    score = _value(name, lambda field: f"b.{field}")
    wins = (f"FROM temp.nkd_burst b WHERE ({score}) IS NOT NULL AND (runs.best_value IS NULL "
            f"OR {_better(name, score, 'runs.best_value')})")
    order = "DESC" if SELECT_BY[name][1] else "ASC"
    return ("UPDATE runs SET (best_epoch, best_val_loss, best_train_loss, best_value) = "
            f"(SELECT b.epoch, b.val_loss, b.train_loss, {score} {wins} "
            f"ORDER BY {score} {order}, b.seq LIMIT 1) WHERE id = :id AND EXISTS (SELECT 1 {wins})")


_REACHED = "UPDATE runs SET epoch = max(coalesce(epoch, 0), :last) WHERE id = :id"
EPOCH_UPDATE = _epoch_sql()
_BURST_UPDATE = {name: _burst_sql(name) for name in SELECT_BY}
_BURST_TABLE = ("CREATE TEMP TABLE IF NOT EXISTS nkd_burst (seq INTEGER, epoch INTEGER, "
                + ", ".join(f"{field} REAL" for field in FIELDS) + ")")
_BURST_ROW = f"INSERT INTO temp.nkd_burst VALUES ({', '.join('?' * (len(FIELDS) + 2))})"


def record_epochs(conn: sqlite3.Connection, run_id: str, epochs: list[dict[str, Any]]) -> None:
    """The run row's epoch and best epoch after `epochs` in order (each: epoch and FIELDS):
    one UPDATE for a burst where that is the same, one per epoch otherwise."""
    numbers = [e["epoch"] for e in epochs]
    if len(epochs) >= BURST and all(a < b for a, b in zip(numbers, numbers[1:], strict=False)):
        row = conn.execute(f"SELECT best_epoch, coalesce(select_by, "
                           f"'{KEYS['select_by'].default}') FROM runs WHERE id = ?",
                           (run_id,)).fetchone()
        if row is not None and row[0] not in numbers and row[1] in _BURST_UPDATE:
            conn.execute(_BURST_TABLE)
            conn.execute("DELETE FROM temp.nkd_burst")
            conn.executemany(_BURST_ROW, [(i, e["epoch"], *(e[f] for f in FIELDS))
                                          for i, e in enumerate(epochs)])
            for sql in (_BURST_UPDATE[row[1]], _REACHED):
                conn.execute(sql, {"id": run_id, "last": numbers[-1]})
            return
    conn.executemany(EPOCH_UPDATE, [{**e, "id": run_id} for e in epochs])
