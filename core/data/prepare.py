"""`nkd data prepare SOURCE`: decode a data source into the prepared-audio cache ahead of runs,
at the sample rates (and, for track folders, with the stems) the registry's experiments use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.data.cache import AudioCache
from core.errors import RegistryError
from core.registry import DATA_REF_KEYS, Registry, data_source, folders
from core.registry.settings import family_of, with_defaults
from core.registry.workspace import Workspace


def _rate(kind: str) -> int:
    """The schema's sample rate for a kind of data (a command experiment reads none)."""
    return int(with_defaults(kind if kind == "separation" else "noise", {})["sample_rate"])


def needs(registry: Registry, source: str) -> list[tuple[int, tuple[str, ...]]]:
    """(sample rate, stems) of every experiment that reads `source`, each pair once."""
    kind = data_source(registry, source).settings.get("kind", "noise")
    found: list[tuple[int, tuple[str, ...]]] = []
    for exp in registry.experiments.values():
        if not any(exp.params.get(k) == source for k in DATA_REF_KEYS):
            continue
        p: dict[str, Any] = with_defaults(family_of(exp.recipe), exp.params)
        stems = tuple(p.get("stems", ())) if kind == "separation" else ()
        pair = (int(p.get("sample_rate") or _rate(kind)), stems or _stems(kind))
        if pair not in found:
            found.append(pair)
    return found


def prepare_source(registry: Registry, source: str, rate: int | None = None) -> list[str]:
    """Prepare every file of `source`; returns one summary line per sample rate."""
    if source not in registry.data and not folders.looks_like_folder(source):
        known = ", ".join(registry.data) or "none"
        raise RegistryError(f"{registry.path}: no data source '{source}' (known: {known}; "
                            f"a folder path works too)")
    src = data_source(registry, source)
    root = src.root if src.root.is_absolute() else registry.root / src.root
    kind = src.settings.get("kind", "noise")
    wanted = needs(registry, source)
    if rate is not None:
        wanted = [(rate, stems) for _, stems in wanted] or [(rate, ())]
    if not wanted:
        wanted = [(_rate(kind), ())]
    cache = AudioCache(Workspace.at(registry.path).cache_dir)
    lines = []
    for sample_rate, stems in dict.fromkeys(wanted):
        if kind == "separation":
            from core.data.tracks import STEMS, prepare

            tracks = prepare(root, source, stems or STEMS, sample_rate, cache)
            seconds = sum(t.frames for t in tracks) / sample_rate
            lines.append(f"{source}: {len(tracks)} tracks, {seconds / 60:.1f} min at "
                         f"{sample_rate} Hz prepared in {cache.dir}")
        else:
            from core.data.noise_index import audio_files

            files = _clip_files(root, source, audio_files)
            done = cache.prepare_all(files, sample_rate, mono=True,
                                     label=f"preparing {source} at {sample_rate} Hz")
            seconds = sum(p.frames for p in done) / sample_rate
            lines.append(f"{source}: {len(done)} clips, {seconds / 60:.1f} min at "
                         f"{sample_rate} Hz prepared in {cache.dir}")
    return lines


def _clip_files(root: Path, source: str, audio_files) -> list[Path]:
    if not root.is_dir():
        raise RegistryError(f"data source '{source}': folder {root} does not exist")
    return audio_files(root)


def _stems(kind: str) -> tuple[str, ...]:
    if kind != "separation":
        return ()
    from core.data.tracks import STEMS

    return STEMS
