"""What a launch's provenance record costs: the code state of a 10,000-file repository with a
dirty tree, a 100,000-file data source, and the environment, as `core.runs.provenance.record`
writes them into a run folder.

Prints each part and the whole, cold (no fingerprint cache, the package list read as in a
fresh process) and warm (the data folder's directory digests cached from the previous launch),
median of a few repeats. Target on the 2-core reference machine: the warm record <= 200 ms.

    .venv/bin/python bench/provenance_bench.py [--files 100000] [--repo-files 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.timing import median_ms  # noqa: E402
from core.runs import provenance  # noqa: E402
from core.runs.fingerprint import fingerprint  # noqa: E402

GIT = ["git", "-c", "user.email=b@example.org", "-c", "user.name=b",
       "-c", "init.defaultBranch=main"]


def make_repo(root: Path, files: int) -> Path:
    repo = root / "repo"
    for i in range(files):
        d = repo / f"pkg{i % 100}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"mod{i}.py").write_text(f"VALUE = {i}\n")
    subprocess.run([*GIT, "init", "-q", str(repo)], check=True)
    subprocess.run([*GIT, "-C", str(repo), "add", "."], check=True)
    subprocess.run([*GIT, "-C", str(repo), "commit", "-qm", "first"], check=True)
    for i in range(0, files, files // 50):  # 50 edited files and 20 new ones: a dirty tree
        (repo / f"pkg{i % 100}" / f"mod{i}.py").write_text(f"VALUE = {i + 1}\n")
    for i in range(20):
        (repo / f"new{i}.py").write_text("x = 1\n")
    return repo


def make_data(root: Path, files: int) -> Path:
    data = root / "data"
    for i in range(files):
        d = data / f"class{i % 10}" / f"part{i % 100 // 10}"
        if i < 100:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"clip{i:06d}.wav").write_bytes(b"")
    return data


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--repo-files", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="nkd-prov-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        repo, data = make_repo(root, args.repo_files), make_data(root, args.files)
        time.sleep(provenance_racy_wait())
        print(f"a {args.repo_files:,}-file repository (50 files edited, 20 new) and a "
              f"{args.files:,}-file data folder, made in {time.perf_counter() - t0:.1f} s")
        run_dir, cache = root / "run", root / "cache"
        run_dir.mkdir()

        def launch() -> None:  # what a launch does: read, then write into the run folder
            provenance.installed.cache_clear()  # a fresh `nkd run` process lists them again
            provenance.record(run_dir, provenance.snapshot(repo, {"data": data}, cache))

        def cold() -> None:
            shutil.rmtree(cache, ignore_errors=True)
            launch()

        code = median_ms(lambda: provenance.code_state(repo), args.repeat)
        full = median_ms(lambda: fingerprint(data), args.repeat)
        launch()  # fills the cache
        cached = median_ms(lambda: fingerprint(data, cache / "x.json"), 1)  # fills its own
        cached = median_ms(lambda: fingerprint(data, cache / "x.json"), args.repeat)

        def env() -> None:
            provenance.installed.cache_clear()
            provenance.environment(run_dir)

        environment = median_ms(env, args.repeat)
        whole_cold = median_ms(cold, args.repeat)
        whole_warm = median_ms(launch, args.repeat)
        print(f"code state (git status, diff, untracked):   {code:7.1f} ms")
        print(f"data fingerprint, every file read:          {full:7.1f} ms")
        print(f"data fingerprint, directory digests cached: {cached:7.1f} ms")
        print(f"environment (package list, fresh process):  {environment:7.1f} ms")
        print(f"whole record, cold (no cache):              {whole_cold:7.1f} ms")
        print(f"whole record, warm (a launch after another): {whole_warm:6.1f} ms  "
              f"(target <= 200 ms)")
    return 0


def provenance_racy_wait() -> float:
    """A directory changed in the last seconds is not cached: let the made tree settle."""
    from core.runs.fingerprint import RACY_S

    return RACY_S + 0.1


if __name__ == "__main__":
    sys.exit(main())
