"""End to end on the CPU: the project's own registry, a synthesized noise set, real workers.

mark1 teacher -> soft labels -> student -> ensemble, then the hybrid-KD line (kd_teacher ->
mark2.5), each started with `nkd run` as a researcher would and checked in the store and on disk.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from core.store import Store
from nkd_tui.cli import main

ROOT = Path(__file__).resolve().parent.parent


class Space:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.registry = root / "experiments.toml"
        self.outputs: dict[str, str] = {}

    def nkd(self, *args: str) -> int:
        return main(["--registry", str(self.registry), *args])

    def store(self) -> Store:
        return Store(self.root / "nkd.db")

    def latest(self, experiment: str) -> dict:
        store = self.store()
        try:
            run = store.latest_run(experiment)
            assert run is not None, f"no run of {experiment}"
            return run
        finally:
            store.close()

    def metrics(self, run_id: str) -> dict[tuple[str, str | None, str | None], float]:
        store = self.store()
        try:
            return {(m["name"], m["split"], m["stem"]): m["value"] for m in store.metrics(run_id)}
        finally:
            store.close()

    def epochs(self, run_id: str) -> list[dict]:
        store = self.store()
        try:
            return store.epochs(run_id)
        finally:
            store.close()


CHAIN = [
    ("mark1", ["epochs=8", "lr=1e-3"]),
    ("mark1.soft_labels", []),
    ("mark1.student", ["epochs=10", "lr=1e-3"]),
    ("mark1.ensemble", []),
    ("kd_teacher", ["epochs=6", "lr=1e-3"]),
    ("mark2.5", ["epochs=6", "lr=1e-3"]),
]


@pytest.fixture(scope="module")
def space(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Space]:
    root = tmp_path_factory.mktemp("noise")
    shutil.copy(ROOT / "experiments.toml", root / "experiments.toml")
    s = Space(root)
    assert s.nkd("data", "synth", "noise", "--per-class", "16") == 0
    for name, sets in CHAIN:
        code = s.nkd("run", name, *[a for kv in sets for a in ("--set", kv)], "--set", "device=cpu")
        run = s.latest(name)
        output = (Path(run["run_dir"]) / "output.log").read_text()
        s.outputs[name] = output
        assert code == 0 and run["status"] == "finished", (
            f"{name}: {run['error']}\n{output[-3000:]}"
        )
    yield s


def test_teacher_learns_and_records_everything(space: Space) -> None:
    run = space.latest("mark1")
    epochs = space.epochs(run["id"])
    assert len(epochs) == 8 and all(e["val_loss"] is not None for e in epochs)
    best = min(epochs, key=lambda e: e["val_loss"])
    assert json.loads(best["extra"])["val_accuracy"] >= 0.7  # three classes: chance is 0.33
    m = space.metrics(run["id"])
    assert m[("accuracy", "test", None)] >= 0.7
    assert {("macro_f1", "test", None), ("roc_auc", "test", None)} <= set(m)
    assert ("zero_shot_accuracy", "zero_shot", None) in m  # the text model is installed in tests
    ckpt = space.root / "checkpoints" / run["id"]
    for name in (
        "best_teacher_encoder.pth",
        "best_teacher_classifier.pth",
        "teacher_encoder.pth",
        "teacher_classifier.pth",
        "teacher_state.pt",
    ):
        assert (ckpt / name).is_file(), name
    folder = Path(run["run_dir"])
    for name in (
        "loss_curve_train_val.png",
        "confusion_matrix.csv",
        "confusion_matrix.png",
        "prediction_details.csv",
        "zero_shot_predictions.csv",
    ):
        assert (folder / name).stat().st_size > 0, name
    assert run["accuracy"] == m[("accuracy", "test", None)]
    assert run["device"] == "cpu"
    # the clip index lives in the workspace, never in the data folder
    assert (space.root / "cache" / "index" / "noise" / "dataset_index.csv").is_file()
    assert not list((space.root / "data").rglob("dataset_index*"))


def test_teacher_checkpoint_describes_itself(space: Space) -> None:
    from core.training import checkpoint

    run = space.latest("mark1")
    payload = checkpoint.load(space.root / "checkpoints" / run["id"] / "best_teacher_encoder.pth")
    meta = payload["meta"]
    assert meta["classes"] == ["apartment_noise", "daily_noise", "background_noise"]
    assert meta["prompts"][0] == "a sound of apartment noise in the room"
    assert len(meta["text_hash"]) == 16 and meta["norm_mean"].shape == (64,)
    assert meta["mel"] == {"sample_rate": 16000, "n_fft": 512, "hop_length": 160, "n_mels": 64}


def test_soft_labels_are_npz_with_provenance(space: Space) -> None:
    from core.util.checksum import sha256_file

    teacher = space.latest("mark1")
    run = space.latest("mark1.soft_labels")
    path = space.root / "checkpoints" / run["id"] / "soft_labels.npz"
    with np.load(path, allow_pickle=False) as data:
        assert data["embeddings"].shape[1] == 384
        assert np.allclose(data["probabilities"].sum(1), 1, atol=1e-4)
        assert list(data["classes"]) == ["apartment_noise", "daily_noise", "background_noise"]
        best = space.root / "checkpoints" / teacher["id"] / "best_teacher_encoder.pth"
        assert str(data["teacher_sha256"]) == sha256_file(best)
    store = space.store()
    try:
        lineage = {(r["child"], r["parent"], r["relation"]) for r in store.lineage()}
    finally:
        store.close()
    assert (
        f"{run['id']}/soft_labels.npz",
        f"{teacher['id']}/best_teacher_encoder.pth",
        "teacher",
    ) in lineage


def test_student_follows_the_teacher(space: Space) -> None:
    run = space.latest("mark1.student")
    assert "soft labels: run mark1.soft_labels_" in space.outputs["mark1.student"]
    val = [e["val_loss"] for e in space.epochs(run["id"])]
    assert val[-1] < val[0] * 0.7, val  # validation L1 to the teacher's embeddings falls
    ckpt = space.root / "checkpoints" / run["id"]
    assert {
        "best_student_encoder.pth",
        "best_student_head.pth",
        "student_encoder.pth",
        "student_head.pth",
    } <= {p.name for p in ckpt.iterdir()}


def test_ensemble_reports_three_models_side_by_side(space: Space) -> None:
    run = space.latest("mark1.ensemble")
    m = space.metrics(run["id"])
    for prefix in ("teacher_", "student_", ""):
        for name in ("accuracy", "macro_f1", "roc_auc"):
            assert (f"{prefix}{name}", "test", None) in m
    table = (Path(run["run_dir"]) / "ensemble_comparison.csv").read_text().splitlines()
    assert table[0] == "model,accuracy,macro_f1,roc_auc" and len(table) == 4


def test_hybrid_kd_trains_a_binary_student(space: Space) -> None:
    run = space.latest("mark2.5")
    out = space.outputs["mark2.5"]
    assert "ESKD: using the teacher's early-stopped best checkpoint" in out
    assert "by grouping its classes" in out
    m = space.metrics(run["id"])
    assert m[("accuracy", "test", None)] > 0.5 and ("teacher_accuracy", "test", None) in m
    epochs = space.epochs(run["id"])
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    from core.training import checkpoint

    meta = checkpoint.load(space.root / "checkpoints" / run["id"] / "best_student_head.pth")["meta"]
    assert meta["classes"] == ["thumping", "other"]  # registry order, not alphabetical
    assert (meta["alpha"], meta["kd_temperature"]) == (0.7, 4.0)


def test_class_order_mismatch_is_refused(space: Space) -> None:
    code = space.nkd(
        "run",
        "mark1.ensemble",
        "--set",
        'classes=["daily_noise", "apartment_noise", "background_noise"]',
    )
    run = space.latest("mark1.ensemble")
    assert code != 0 and run["status"] == "failed"
    assert "class order" in run["error"] and "differs from teacher" in run["error"]


def test_missing_teacher_run_is_a_clear_error(space: Space, capsys) -> None:
    """Refused before anything is recorded: no failed run left in the store."""
    capsys.readouterr()
    assert space.nkd("run", "mark2.soft_labels") == 2
    err = capsys.readouterr().err
    assert "teacher 'mark2' has no finished run yet; run `nkd run mark2` first" in err
    store = space.store()
    try:
        assert store.latest_run("mark2.soft_labels") is None
    finally:
        store.close()


def test_eval_scores_the_teacher_on_clips_it_never_saw(space: Space, tmp_path: Path,
                                                        capsys) -> None:
    """A second set synthesized with another seed, given as a folder: `nkd eval mark1 --data
    FOLDER` scores the teacher on every clip of it as split=test, without training a student,
    and records the checkpoint it scored as its parent."""
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(ROOT / "experiments.toml", other / "experiments.toml")
    assert main(["--registry", str(other / "experiments.toml"), "data", "synth", "noise",
                 "--per-class", "6", "--seed", "1"]) == 0
    capsys.readouterr()
    assert space.nkd("eval", "mark1", "--data", str(other / "data" / "noise"),
                     "--set", "device=cpu") == 0
    out = capsys.readouterr().out
    run_id = out.split(":", 1)[0].strip()
    run = space.latest(run_id.rsplit("_", 2)[0])
    assert run["id"] == run_id and run["status"] == "finished"
    m = space.metrics(run_id)
    assert m[("accuracy", "test", None)] >= 0.5  # three classes: chance is 0.33
    log = (Path(run["run_dir"]) / "output.log").read_text()
    assert "class sub-folders" in log and "as split=test" in log
    store = space.store()
    try:
        node = next(c for c in store.checkpoints(run_id) if c["role"] == "evaluation")
        (parent,) = store.conn.execute("SELECT parent FROM lineage WHERE child = ?",
                                       (node["id"],)).fetchone()
    finally:
        store.close()
    assert parent == f"{space.latest('mark1')['id']}/best_teacher_encoder.pth"
    assert not list((other / "data").rglob("dataset_index*"))  # nothing written there

    # the same folder as the ensemble's test_data: teacher, student and ensemble on it
    assert space.nkd("run", "mark1.ensemble", "--set", f"test_data={other / 'data' / 'noise'}",
                     "--set", "device=cpu") == 0
    ens = space.latest("mark1.ensemble")
    details = (Path(ens["run_dir"]) / "prediction_details.csv").read_text().splitlines()
    evaluated = (Path(run["run_dir"]) / "prediction_details.csv").read_text().splitlines()
    assert len(details) == len(evaluated)  # every clip of the folder, as nkd eval scored
    assert all(split == "test" for (_, split, _) in space.metrics(ens["id"]))


def test_a_noise_evaluation_keeps_its_confusion_and_misclassified_clips(
        space: Space, capsys) -> None:
    """The teacher's test evaluation: the confusion matrix with per-class precision and recall,
    the most confidently misclassified clips (excerpts that decode), shown by `nkd results`."""
    import soundfile

    from core.results.kept import load

    run = space.latest("mark1.student")
    [res] = [r for r in load(Path(run["run_dir"])) if r.split == "test"]
    doc = res.doc
    n = len(doc["classes"])
    assert doc["kind"] == "noise" and len(doc["confusion"]) == n
    assert sum(map(sum, doc["confusion"])) == doc["clips"] and res.missing() == []
    correct = sum(doc["confusion"][i][i] for i in range(n))
    assert len(doc["misclassified"]) == min(20, doc["clips"] - correct)
    confidences = [m["confidence"] for m in doc["misclassified"]]
    assert confidences == sorted(confidences, reverse=True)
    for item in doc["misclassified"][:3]:
        audio = res.path(item["kept"]["signals"]["clip"]["audio"])
        assert soundfile.info(str(audio)).samplerate == 16000
    # whether the student missed any depends on its training: the excerpts are checked on
    # misses made certain, the synthesized clips scored as the wrong class
    from core.data.noise_index import Row
    from core.noise.keep import keep

    clips = sorted((space.root / "data").rglob("*.wav"))[:4]
    rows = [Row(str(c.relative_to(space.root)), "a", "test", str(c), 0.0, 1.0, "")
            for c in clips]
    probs = np.tile([[0.1, 0.9]], (4, 1))
    folder = keep(space.root / "scratch", "test", ["a", "b"], np.zeros(4, dtype=int), probs,
                  rows, 3, 16000)
    [made] = load(folder.parent.parent)
    assert [m["predicted"] for m in made.doc["misclassified"]] == ["b"] * 4
    kept = [m for m in made.doc["misclassified"] if m.get("kept")]
    assert len(kept) == 3 and made.missing() == []
    for item in kept:
        data, rate = soundfile.read(str(made.path(item["kept"]["signals"]["clip"]["audio"])))
        assert rate == 16000 and len(data) == 16000
    capsys.readouterr()
    assert space.nkd("results", run["id"]) == 0
    out = capsys.readouterr().out
    assert "confusion (rows true, columns predicted)" in out and "precision  recall" in out
