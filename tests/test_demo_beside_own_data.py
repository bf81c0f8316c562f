"""A run on the researcher's own folder never scores the demo's data left on disk (`make demo`)
unless the command line names it: each demo part is left out with one notice."""

from __future__ import annotations

import shutil
from pathlib import Path

from core.registry import load_registry
from core.runs.inputs import check_inputs
from core.store import Store

ROOT = Path(__file__).resolve().parent.parent


def _workspace(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "experiments.toml", tmp_path / "experiments.toml")
    for demo in ("noise_zero_shot/drilling", "noise/apartment_noise"):  # left by the demo
        (tmp_path / "data" / demo).mkdir(parents=True)
    for label in ("thud", "hum"):
        (tmp_path / "mine" / label).mkdir(parents=True)
        (tmp_path / "mine" / label / "a.wav").write_bytes(b"")
    return tmp_path / "experiments.toml"


def test_the_demos_zero_shot_set_is_not_scored_beside_a_users_folder(tmp_path: Path) -> None:
    registry = load_registry(_workspace(tmp_path))
    store = Store(tmp_path / "nkd.db")
    exp = registry.resolve("mark1", ["data=./mine"])
    ran, notices = check_inputs(registry, exp, store)
    assert "eval_data" not in ran.params
    assert notices == ["eval_data 'noise_zero_shot' is demo data and data is your own: left "
                       "out, its zero-shot check is skipped (--set eval_data=noise_zero_shot "
                       "scores it)"]
    named = registry.resolve("mark1", ["data=./mine", "eval_data=noise_zero_shot"])
    ran, notices = check_inputs(registry, named, store)
    assert ran.params["eval_data"] == "noise_zero_shot" and notices == []
    demo = registry.resolve("mark1")  # the demo's own run scores its own parts
    ran, _ = check_inputs(registry, demo, store)
    assert ran.params.get("eval_data") == "noise_zero_shot"
    store.close()
