"""What a separation run names, checked at launch as its recipe reads it: a `pretrained` file is
an nkd separator whose weights fit its own meta and, for a fine-tune, the architecture this run
builds; a blend's file sources can be averaged (one kind, one architecture, the same keys and
shapes). The recipe calls the same functions when it loads them. torch is imported only for a
run that names a file."""

from __future__ import annotations

from core.errors import RunError
from core.registry.experiment import Experiment
from core.registry.model import Registry, named_files
from core.registry.settings import resolve
from core.store import Store


def check(registry: Registry, exp: Experiment, _store: Store) -> None:
    """RunError, naming the key and the file, for a file the recipe would refuse."""
    named, sources = named_files(registry, exp)
    if not sources and not any(key == "pretrained" for key, _path in named):
        return
    # torch, only for a run that names a file
    from core.separation.blend import check_sources
    from core.separation.recipes import check_pretrained
    from core.training import checkpoint

    if sources and exp.recipe == "separation.blend":
        try:
            check_sources(sources, [checkpoint.read(p) for p in sources])
        except RunError as exc:
            raise RunError(f"key 'sources': {exc}") from None
    for key, path in named:
        if key != "pretrained":
            continue
        settings = resolve(exp.recipe, exp.params)[0] if exp.recipe == "separation.train" \
            else None
        try:
            check_pretrained(path, settings)
        except RunError as exc:
            raise RunError(f"key '{key}': {exc}") from None
