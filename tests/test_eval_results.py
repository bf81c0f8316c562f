"""`eval_result_<stem>[_<split>].csv` written by the researcher's own evaluation script are read as
metrics when it ends: per track, the median over tracks per stem (unless the file has its own
summary row) and the mean over stems; a file that is not such a table is said once in the log;
a file older than the run is not read."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

from conftest import Workspace, nkd

SCRIPT = textwrap.dedent("""
    import csv

    def write(name, header, rows):
        with open(name, "w", newline="") as fh:
            out = csv.writer(fh)
            out.writerow(header)
            out.writerows(rows)

    write("eval_result_vocals.csv", ["track", "SDR", "SIR"],
          [["song_a", 3.0, 10.0], ["song_b", 5.0, 12.0], ["song_c", 4.0, 8.0]])
    write("eval_result_bass.csv", ["track", "SDR"], [["song_a", 1.0], ["song_b", 2.0]])
    write("eval_result_drums_test.csv", ["name", "sdr (dB)"],
          [["song_a", 7.0], ["song_b", "nan"], ["mean", 9.9]])
    write("eval_result_broken.csv", ["x", "y"], [[1, 2]])
    print("evaluated 3 songs")
""")


def test_a_scripts_eval_result_tables_become_metrics(ws: Workspace) -> None:
    (ws.root / "evaluate.py").write_text(SCRIPT)
    stale = ws.root / "eval_result_other.csv"  # from an earlier evaluation: not this run's
    stale.write_text("track,SDR\nsong_a,99\n")
    os.utime(stale, (1_000_000_000, 1_000_000_000))
    ws.registry.write_text(ws.registry.read_text() + f"""
[experiments.own_eval]
group = "own scripts"
command = ["{sys.executable}", "evaluate.py"]
""")
    assert nkd(ws, "run", "own_eval") == 0
    store = ws.store()
    try:
        run = store.latest_run("own_eval")
        metrics = {(m["name"], m["stem"], m["split"], m["track"]): m["value"]
                   for m in store.metrics(run["id"])}
    finally:
        store.close()
    assert metrics[("sdr", "vocals", None, "song_b")] == 5.0
    assert metrics[("sir", "vocals", None, "song_c")] == 8.0
    assert metrics[("sdr", "vocals", None, None)] == 4.0  # the median over tracks
    assert metrics[("sir", "vocals", None, None)] == 10.0
    assert metrics[("sdr", "bass", None, None)] == 1.5
    assert metrics[("sdr", "mean", None, None)] == 2.75  # over the stems
    assert run["sdr"] == 2.75
    assert metrics[("sdr", "drums", "test", "song_a")] == 7.0
    assert metrics[("sdr", "drums", "test", None)] == 9.9  # the file's own summary row
    assert ("sdr", "drums", "test", "song_b") not in metrics  # nan is no value
    assert not any(m[1] == "other" for m in metrics)  # older than the run
    assert not any(m[1] == "broken" for m in metrics)
    log = (Path(run["run_dir"]) / "output.log").read_text()
    assert log.count("eval_result_broken.csv: not read as metrics (no SDR/SIR/ISR/SAR column") \
        == 1
