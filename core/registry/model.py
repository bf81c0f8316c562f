"""The experiment registry: parse, validate and resolve `experiments.toml`."""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import RegistryError, RunError
from core.registry import folders
from core.registry.include import check_workspace, with_includes
from core.registry.queue import QueueConfig, Sweep, parse_memory, parse_queue, parse_sweeps
from core.registry.slurm import SlurmConfig, parse_backends
from core.util.names import name_problem

# ── key schema ──────────────────────────────────────────────────────────────────────────────
# Every key an experiment may carry: its type and what it means. Types are checked on load and on
# `--set`; the comment is shown by `nkd show --keys`.


@dataclass(frozen=True)
class Key:
    kind: str  # str | int | float | bool | list[str] | str-or-list | classes | weights | table
    help: str
    choices: tuple[str, ...] = ()
    lo: float | None = None  # smallest allowed value (numbers)
    hi: float | None = None  # largest allowed value
    lo_open: bool = False  # lo itself is not allowed (lr > 0)
    hi_open: bool = False

    def range_text(self) -> str:
        if self.lo is None and self.hi is None:
            return ""
        if self.hi is None:
            return f"{'>' if self.lo_open else '≥'} {self.lo:g}"
        if self.lo is None:
            return f"{'<' if self.hi_open else '≤'} {self.hi:g}"
        return (f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}"
                f"{')' if self.hi_open else ']'}")

    def out_of_range(self, value: float) -> bool:
        if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
            return True
        return self.hi is not None and (value > self.hi or (self.hi_open and value == self.hi))


def _pos(kind: str, help: str, lo: float = 0, lo_open: bool = True, hi: float | None = None,
         hi_open: bool = False) -> Key:
    return Key(kind, help, lo=lo, lo_open=lo_open, hi=hi, hi_open=hi_open)


KEYS: dict[str, Key] = {
    # identity and wiring
    "group": Key("str", "group shown in the TUI tree (noise, kd, separation, ...)"),
    "description": Key("str", "one line saying what the experiment is"),
    "recipe": Key("str", "built-in recipe, e.g. noise.teacher or separation.train"),
    "command": Key("list[str]", "the researcher's own script; {key} is replaced by that value"),
    "cwd": Key("str", "working directory of a command experiment, relative to the registry"),
    "env": Key("table", "extra environment variables for the worker"),
    "params": Key("table", "free-form parameters of a command experiment"),
    "output_scalars": Key("list[str]", "regular expressions whose named groups are values a "
                          "command prints, e.g. 'val SDR: (?P<sdr>\\S+)'; (?P<epoch>...) sets "
                          "the epoch"),
    "checkpoints": Key("globs", "checkpoint files the script writes: globs relative to the "
                       "registry, {key} from the settings; a table {best = ..., last = ...} "
                       "names their roles"),
    "tensorboard_dir": Key("str", "where the script's SummaryWriter writes (relative to the "
                           "registry, {key} from the settings); its scalars are recorded per "
                           "step. The run's folder is always followed"),
    "on_finish": Key("list[str]", "a command run when the run ends, e.g. [\"notify-send\", "
                     "\"{run_id} {status}\"]; {run_id} {status} {experiment} {run_dir}"),
    "evaluates": Key("str", "this command scores the checkpoint of this reference: its results "
                     "go on that checkpoint's lineage node", ("pretrained", "teacher")),
    "checkpoint_copy": Key("str", "what nkd keeps of a matched checkpoint in the run's folder",
                           ("link", "copy", "none")),
    "builtin_scalars": Key("bool", "read common log shapes (Keras, Lightning, tqdm, key: value) "
                           "from a command's output (default true)"),
    "extends": Key("str", "experiment whose settings this one starts from"),
    "tags": Key("list[str]", "free labels"),
    "reported": Key("table", "values the researcher reported before nkd (sdr_db, note, ...)"),
    # references
    "data": Key("str", "named data source ([data.NAME])"),
    "val_data": Key("str", "named data source used for validation"),
    "test_data": Key("str", "named data source scored as the test split (metrics split=test; "
                     "a gain correction is fitted on val_data and applied unchanged)"),
    "eval_data": Key("str", "named data source used for evaluation"),
    "pretrained": Key("str", "weights to start from: experiment name, run:<run_id>, best:EXP, "
                      "EXP@key=value or a file"),
    "teacher": Key("str", "teacher: experiment name, run:<run_id>, best:EXP, EXP@key=value "
                   "or a file"),
    "sources": Key("weights", "blend sources and their weights, summing to 1"),
    # common training settings
    "seed": _pos("int", "random seed; stored with the run", lo_open=False),
    "device": Key("str", "auto (cuda if available), cpu, cuda or cuda:N"),
    "epochs": _pos("int", "maximum number of epochs"),
    "lr": _pos("float", "learning rate"),
    "batch_size": _pos("int", "batch size"),
    "patience": _pos("int", "early-stopping patience in epochs (0 = off)", lo_open=False),
    "optimizer": Key("str", "optimizer", ("adam", "adamw", "sgd")),
    "weight_decay": _pos("float", "optimizer weight decay", lo_open=False),
    "scheduler": Key("str", "learning-rate schedule", ("none", "plateau", "cosine")),
    "num_workers": _pos("int", "DataLoader worker processes", lo_open=False),
    "threads": _pos("int", "torch and BLAS threads of the run (default: torch's, or the run's "
                    "share of the cores when other runs are active)"),
    "amp": Key("bool", "bf16 autocast on CUDA"),
    "accumulate": _pos("int", "batches whose gradients are summed per optimiser step (1 = off)"),
    "grad_clip": _pos("float", "clip the gradient norm to this value (0 = off)", lo_open=False),
    "compile": Key("bool", "run the model through torch.compile (eager, with the reason, where "
                   "it cannot compile)"),
    "checkpoint_every": _pos("int", "write the last checkpoint every N epochs"),
    # placement and the queue
    "gpus": _pos("int", "GPUs a run needs (default 1 for built-in recipes, 0 for commands; "
                 "ignored on a box without GPUs)", lo_open=False),
    "gpu_memory": Key("memory", "free memory a GPU must have for the run, e.g. \"10GiB\""),
    "priority": Key("int", "queue priority: higher starts first (default 0)"),
    "backend": Key("str", "where runs execute: this box, or the Slurm cluster of "
                   "[backends.slurm]", ("local", "slurm")),
    # audio features
    "sample_rate": _pos("int", "sample rate in Hz", lo=1000, lo_open=False),
    "n_fft": _pos("int", "STFT size", lo=16, lo_open=False),
    "hop_length": _pos("int", "STFT hop in samples"),
    "n_mels": _pos("int", "mel bins"),
    "segment_seconds": _pos("float", "length of one training segment in seconds"),
    # noise classification / distillation
    "classes": Key("classes", "class list, or a mapping new class -> [original classes]"),
    "prompt": Key("str", "text prompt template for class embeddings, with {class}"),
    "text_model": Key("str", "sentence-embedding model name or local path"),
    "temperature": _pos("float", "cosine-logit temperature of the ViLD heads"),
    "background_embedding": Key("bool", "learn a background embedding beside the class texts"),
    "alpha": _pos("float", "hybrid KD weight of the soft (KL) term", lo_open=False, hi=1),
    "kd_temperature": _pos("float", "hybrid KD softening temperature T"),
    "teacher_checkpoint": Key("str", "which teacher weights (ESKD: best)", ("best", "last")),
    "augment": Key(
        "str", "augmentation", ("none", "removal", "noise", "shift", "mix1", "mix2")
    ),
    "augment_target": Key(
        "str", "who is trained on augmented data", ("teacher", "student", "both")
    ),
    "noise_snr_db": Key("float", "SNR of injected Gaussian noise in dB"),
    "cosine_weight": _pos(
        "float", "weight of the cosine term in the student's embedding loss", lo_open=False
    ),
    "ensemble": Key("str", "how teacher and student are combined", ("mean", "geometric")),
    "ensemble_weight": _pos(
        "float", "teacher weight in the ensemble (ViLD lambda = 2/3)", lo_open=False, hi=1
    ),
    "zero_shot_classes": Key("list[str]", "held-out noise types evaluated zero-shot"),
    "embed_dim": _pos("int", "embedding size of the audio encoder"),
    # source separation
    "model": Key("str", "separation model", ("crnn", "unet_crnn")),
    "hidden_size": _pos("int", "LSTM hidden size"),
    "num_layers": _pos("int", "LSTM layers"),
    "dropout": _pos("float", "dropout probability", lo_open=False, hi=1, hi_open=True),
    "stems": Key("list[str]", "stems to separate"),
    "target_stem": Key("str", "train on this stem only; the others are silent"),
    "mask_scale": _pos("float", "multiply predicted masks by this at inference"),
    "threshold": _pos(
        "float", "zero mask values below this at inference", lo_open=False, hi=1, hi_open=True
    ),
    "gain_correction": Key("bool", "estimate per-stem output gain on the validation set"),
    "remix_prob": _pos(
        "float", "probability of remixing stems from different tracks", lo_open=False, hi=1
    ),
    "random_gain": Key("bool", "random gain per stem during training"),
    "freeze": Key("list[str]", "parameter-name prefixes kept frozen"),
    "rhythm_head": Key("bool", "add the onset (rhythm) head of the U-Net CRNN"),
    "focal_gamma": _pos("float", "focal-loss gamma of the rhythm head", lo_open=False),
}

DATA_KEYS: dict[str, Key] = {
    "root": Key("str", "folder of audio files or track folders, relative to the registry"),
    "kind": Key("str", "what the folder holds", ("noise", "separation", "audio")),
    "label_from": Key("str", "where a clip's label comes from", ("folder", "prefix")),
    "unlabeled": Key("bool", "material without labels (soft-label pool)"),
    "synth": Key("str", "procedural generator for demo data", ("noise", "separation")),
    "description": Key("str", "one line saying what the data is"),
}

# what each built-in recipe cannot run without; checked by `nkd check`, `--set` and the TUI
REQUIRED: dict[str, tuple[str, ...]] = {
    "noise.index": ("data",),
    "noise.teacher": ("classes", "data"),
    "noise.soft_labels": ("teacher", "data"),
    "noise.student": ("teacher", "data"),
    "noise.ensemble": ("teacher", "data"),
    "noise.hybrid_kd": ("classes", "data"),
    "separation.train": ("data",),
    "noise.evaluate": ("teacher",),
    "separation.evaluate": ("pretrained",),
    "separation.blend": ("sources", "val_data"),
}

TOP_LEVEL = ("defaults", "data", "experiments", "queue", "sweeps", "backends", "workspace",
             "include")
REFERENCE_KEYS = ("pretrained", "teacher")
DATA_REF_KEYS = ("data", "val_data", "test_data", "eval_data")
ON_FINISH_FIELDS = ("run_id", "status", "experiment", "run_dir")
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")


# ── resolved objects ────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class DataSource:
    name: str
    root: Path
    settings: dict[str, Any]


@dataclass(frozen=True)
class Reference:
    """A pointer to weights: an experiment's latest run, one run, or a file."""

    kind: str  # experiment | run | file
    target: str
    weight: float | None = None

    def __str__(self) -> str:
        return {"experiment": self.target, "run": f"run:{self.target}",
                "best": f"best:{self.target}"}.get(self.kind, self.target)


@dataclass(frozen=True)
class Experiment:
    name: str
    params: dict[str, Any]  # fully resolved: defaults <- extends chain <- own keys <- overrides
    chain: tuple[str, ...]  # extends chain, this experiment first
    references: dict[str, Reference] = field(default_factory=dict)
    sources: tuple[Reference, ...] = ()

    @property
    def group(self) -> str:
        return str(self.params.get("group", "other"))

    @property
    def recipe(self) -> str | None:
        return self.params.get("recipe")

    @property
    def command(self) -> list[str] | None:
        return self.params.get("command")

    @property
    def reported(self) -> dict[str, Any]:
        return dict(self.params.get("reported", {}))


def data_source(registry: Registry, value: str) -> DataSource:
    """The named source, or a folder given as a path with its kind detected."""
    if value in registry.data:
        return registry.data[value]
    root = folders.resolve(value, registry.root).resolve()
    found = folders.detect(root) if root.is_dir() else None
    if found is None:
        raise RegistryError(f"{registry.path}: data folder {root} {folders.why_not(root)}")
    settings, detected = found
    return DataSource(value, root, {**settings, "root": str(root), "detected": detected})


@dataclass
class Registry:
    path: Path
    defaults: dict[str, Any]
    data: dict[str, DataSource]
    raw: dict[str, dict[str, Any]]  # experiment name -> its own keys, as written
    experiments: dict[str, Experiment]
    queue: QueueConfig = field(default_factory=QueueConfig)
    sweeps: dict[str, Sweep] = field(default_factory=dict)
    backends: dict[str, SlurmConfig] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return self.path.parent

    def get(self, name: str) -> Experiment:
        if name not in self.experiments:
            raise RegistryError(
                f"{self.path}: unknown experiment '{name}'{_suggest(name, self.experiments)}"
            )
        return self.experiments[name]

    def resolve(self, name: str, overrides: Iterable[str] = ()) -> Experiment:
        """The experiment with `--set key=value` overrides applied and validated."""
        base = self.get(name)
        own = dict(self.raw[name])
        params_table = dict(own.get("params", base.params.get("params", {})))
        changed = False
        for item in overrides:
            key, value = parse_override(self.path, name, item)
            if key.startswith("params."):
                params_table[key.removeprefix("params.")] = value
            elif key not in KEYS and key in params_table:
                params_table[key] = value
            else:
                own[key] = value
            changed = True
        if not changed:
            return base
        if params_table:
            own["params"] = params_table
        raw = dict(self.raw)
        raw[name] = own
        return _build(self.path, self.defaults, self.data, raw, only=name)[name]

    def groups(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for exp in self.experiments.values():
            out.setdefault(exp.group, []).append(exp.name)
        return out


# ── loading ─────────────────────────────────────────────────────────────────────────────────


def load_registry(path: str | Path) -> Registry:
    """Parse and validate a registry file; raises RegistryError with one clear line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RegistryError(f"{path}: registry file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError(f"{path}: cannot read registry: {exc}") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"{path}: TOML syntax error: {exc}") from None
    return parse_registry(path, with_includes(path, doc))


def parse_registry(path: Path, doc: dict[str, Any]) -> Registry:
    """Every problem of the file is reported, one line each, not only the first."""
    problems: list[str] = []
    for top in doc:
        if top not in TOP_LEVEL:
            problems.append(f"{path}: unknown top-level table '{top}'{_suggest(top, TOP_LEVEL)}")
    if "workspace" in doc:
        check_workspace(path, doc["workspace"], problems)
    defaults = doc.get("defaults", {})
    if not isinstance(defaults, dict):
        problems.append(f"{path}: [defaults] must be a table")
        defaults = {}
    _check_keys(path, "[defaults]", defaults, KEYS, problems)
    data = _parse_data(path, doc.get("data", {}), problems)
    experiments = doc.get("experiments", {})
    if not isinstance(experiments, dict):
        problems.append(f"{path}: [experiments] must be a table of experiments")
        experiments = {}
    raw: dict[str, dict[str, Any]] = {}
    for name, table in experiments.items():
        problem = name_problem(name)
        if problem:
            problems.append(f"{path}: experiment '{name}': not a valid name: {problem}")
        elif not isinstance(table, dict):
            problems.append(f"{path}: experiment '{name}' must be a table")
        else:
            raw[name] = table
    built = {}
    if not problems or raw:
        try:
            built = _build(path, defaults, data, raw)
        except RegistryError as exc:
            problems += str(exc).splitlines()
    queue = parse_queue(path, doc.get("queue"), problems)
    sweeps = parse_sweeps(path, doc.get("sweeps"), raw, problems)
    backends = parse_backends(path, doc.get("backends"), problems)
    for name, exp in built.items():
        if exp.params.get("backend") == "slurm" and "slurm" not in backends:
            problems.append(f"{path}: experiment '{name}': key 'backend': 'slurm' needs a "
                            f"[backends.slurm] table")
    if problems:
        raise RegistryError("\n".join(problems))
    return Registry(path=path, defaults=defaults, data=data, raw=raw, experiments=built,
                    queue=queue, sweeps=sweeps, backends=backends)


def _parse_data(path: Path, tables: Any, problems: list[str]) -> dict[str, DataSource]:
    if not isinstance(tables, dict):
        problems.append(f"{path}: [data] must be a table of named data sources")
        return {}
    out: dict[str, DataSource] = {}
    for name, table in tables.items():
        where = f"data source '{name}'"
        if not isinstance(table, dict):
            problems.append(f"{path}: {where} must be a table")
            continue
        before = len(problems)
        _check_keys(path, where, table, DATA_KEYS, problems)
        if "root" not in table:
            problems.append(f"{path}: {where}: missing required key 'root'")
        if len(problems) > before:
            continue
        root = Path(table["root"])
        out[name] = DataSource(name, root if root.is_absolute() else path.parent / root, table)
    return out


def _build(
    path: Path,
    defaults: dict[str, Any],
    data: dict[str, DataSource],
    raw: dict[str, dict[str, Any]],
    only: str | None = None,
) -> dict[str, Experiment]:
    names = [only] if only else list(raw)
    out: dict[str, Experiment] = {}
    problems: list[str] = []
    told: dict[str, list[str]] = {}  # experiment -> its problems, without the "where" part
    for name in names:
        where = f"experiment '{name}'"
        before = len(problems)
        _check_keys(path, where, raw[name], KEYS, problems)
        if len(problems) > before:
            continue
        chain: tuple[str, ...] = (name,)
        try:
            chain = _extends_chain(path, name, raw)
            params: dict[str, Any] = dict(defaults)
            for ancestor in reversed(chain):
                own = dict(raw[ancestor])
                own.pop("extends", None)
                # what an experiment *reported* belongs to that experiment alone
                if ancestor != name:
                    own.pop("reported", None)
                    own.pop("description", None)
                if "params" in own and "params" in params:
                    own["params"] = {**params["params"], **own["params"]}
                params.update(own)
            out[name] = _validate(path, name, params, chain, data, raw)
        except RegistryError as exc:
            prefix = f"{path}: {where}: "
            own = [line.removeprefix(prefix) for line in str(exc).splitlines()]
            told[name] = own
            # a problem inherited through `extends` is told at the experiment that wrote it
            inherited = {p for ancestor in chain[1:] for p in _own_problems(
                path, ancestor, defaults, data, raw, told)}
            problems += [prefix + line if not line.startswith(str(path)) else line
                         for line in own if line not in inherited]
    if problems:
        raise RegistryError("\n".join(dict.fromkeys(problems)))
    return out


def _own_problems(
    path: Path,
    name: str,
    defaults: dict[str, Any],
    data: dict[str, DataSource],
    raw: dict[str, dict[str, Any]],
    told: dict[str, list[str]],
) -> list[str]:
    """An ancestor's problems (validated now if it was not yet)."""
    if name not in told:
        try:
            _build(path, defaults, data, raw, only=name)
            told[name] = []
        except RegistryError as exc:
            prefix = f"{path}: experiment '{name}': "
            told[name] = [line.removeprefix(prefix) for line in str(exc).splitlines()]
    return told[name]


def _extends_chain(path: Path, name: str, raw: dict[str, dict[str, Any]]) -> tuple[str, ...]:
    chain = [name]
    current = name
    while "extends" in raw[current]:
        parent = raw[current]["extends"]
        if parent not in raw:
            raise RegistryError(
                f"{path}: experiment '{current}': key 'extends': unknown experiment "
                f"'{parent}'{_suggest(parent, raw)}"
            )
        if parent in chain:
            # told once, from its alphabetically first member, however it was reached
            members = chain[chain.index(parent) :]
            start = members.index(min(members))
            loop = " -> ".join([*members[start:], *members[:start], min(members)])
            raise RegistryError(f"{path}: experiment '{min(members)}': 'extends' cycle: {loop}")
        chain.append(parent)
        current = parent
    return tuple(chain)


def _validate(
    path: Path,
    name: str,
    params: dict[str, Any],
    chain: tuple[str, ...],
    data: dict[str, DataSource],
    raw: dict[str, dict[str, Any]],
) -> Experiment:
    where = f"{path}: experiment '{name}'"
    has_recipe, has_command = "recipe" in params, "command" in params
    if has_recipe == has_command:
        what = "both" if has_recipe else "neither"
        raise RegistryError(f"{where}: has {what} of 'recipe' and 'command'; give exactly one")
    if has_command:
        command = params["command"]
        if not command:
            raise RegistryError(f"{where}: key 'command': must not be empty")
        for arg in command:
            for placeholder in PLACEHOLDER.findall(arg):
                if not _has_param(params, placeholder):
                    raise RegistryError(
                        f"{where}: key 'command': placeholder '{{{placeholder}}}' names no "
                        f"setting of this experiment{_suggest(placeholder, _param_names(params))}"
                    )
    for key in DATA_REF_KEYS:
        if key in params and params[key] not in data:
            value = str(params[key])
            if folders.looks_like_folder(value):
                root = folders.resolve(value, path.parent)
                if not root.is_dir() or folders.detect(root) is None:
                    raise RegistryError(f"{where}: key '{key}': folder {root} "
                                        f"{folders.why_not(root)}")
                continue
            raise RegistryError(
                f"{where}: key '{key}': unknown data source '{params[key]}'"
                f"{_suggest(params[key], data)} (a folder path works too: ./clips)"
            )
    references = {}
    for key in REFERENCE_KEYS:
        if key in params:
            references[key] = _reference(where, key, params[key], raw, name)
    sources: tuple[Reference, ...] = ()
    if "sources" in params:
        weights = params["sources"]
        if len(weights) < 2:
            raise RegistryError(f"{where}: key 'sources': a blend needs at least two sources")
        for src, weight in weights.items():
            if not 0 < weight <= 1:
                raise RegistryError(
                    f"{where}: key 'sources': weight of '{src}' is {weight}; must be in (0, 1]"
                )
        total = sum(weights.values())
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise RegistryError(
                f"{where}: key 'sources': weights sum to {total:g}, not 1 "
                f"({', '.join(f'{k}={v:g}' for k, v in weights.items())})"
            )
        sources = tuple(
            Reference(r.kind, r.target, float(w))
            for r, w in (
                (_reference(where, "sources", src, raw, name), w) for src, w in weights.items()
            )
        )
    classes = params.get("classes")
    if isinstance(classes, dict):
        seen: dict[str, str] = {}
        for new, originals in classes.items():
            for original in originals:
                if original in seen:
                    raise RegistryError(
                        f"{where}: key 'classes': '{original}' is mapped to both "
                        f"'{seen[original]}' and '{new}'"
                    )
                seen[original] = new
    if isinstance(classes, list) and len(set(classes)) != len(classes):
        raise RegistryError(f"{where}: key 'classes': a class is listed twice")
    if classes is not None and len(classes) < 2:
        raise RegistryError(f"{where}: key 'classes': a classifier needs at least two classes")
    if "on_finish" in params and not params["on_finish"]:
        raise RegistryError(f"{where}: key 'on_finish': must not be empty")
    for arg in params.get("on_finish", []):
        for placeholder in PLACEHOLDER.findall(arg):
            if placeholder not in ON_FINISH_FIELDS:
                raise RegistryError(
                    f"{where}: key 'on_finish': placeholder '{{{placeholder}}}' is not one of "
                    f"{', '.join('{' + f + '}' for f in ON_FINISH_FIELDS)}")
    for pattern in params.get("output_scalars", []):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise RegistryError(f"{where}: key 'output_scalars': {pattern!r} is not a regular "
                                f"expression ({exc})") from None
    if has_recipe:  # last, so a specific problem of a key is told before a missing one
        _check_recipe(where, params)
    return Experiment(name, params, chain, references, sources)


def _check_recipe(where: str, params: dict[str, Any]) -> None:
    from core import recipes  # the table of built-in recipes (no heavy imports)

    recipe = params["recipe"]
    try:
        recipes.check(recipe, where)
    except RunError as exc:
        raise RegistryError(str(exc)) from None
    missing = [k for k in REQUIRED.get(recipe, ()) if k not in params]
    if missing:
        raise RegistryError(
            f"{where}: recipe '{recipe}' needs key{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(k) for k in missing)}"
        )


def reference_form(value: str) -> tuple[str, str]:
    """(kind, target) that a reference names by its form alone: `run:<id>`, `best:EXP`,
    `EXP@key=value`, a file path, else an experiment name. The one parser of reference strings
    (the registry, `nkd eval` and the compare screen's parents all read them through it)."""
    if value.startswith("run:"):
        return "run", value.removeprefix("run:")
    if value.startswith("best:"):
        return "best", value.removeprefix("best:")
    is_file = "/" in value or value.endswith((".pth", ".pt", ".safetensors"))
    if is_file:
        return "file", value
    return ("where" if "@" in value else "experiment"), value


def _reference(where: str, key: str, value: str, raw: dict[str, Any], name: str) -> Reference:
    kind, target = reference_form(value)
    if kind == "run":
        if not target:
            raise RegistryError(f"{where}: key '{key}': 'run:' needs a run id")
        return Reference("run", target)
    if kind in ("best", "where"):
        experiment = target.partition("@")[0]
        if experiment not in raw:
            raise RegistryError(f"{where}: key '{key}': unknown experiment '{experiment}' in "
                                f"'{value}'{_suggest(experiment, raw)}")
        if experiment == name:
            raise RegistryError(f"{where}: key '{key}': an experiment cannot refer to itself")
        if kind == "where" and not all(
            "=" in part and part.partition("=")[0].strip()
            for part in re.split(r"[,@]", target.partition("@")[2])
        ):
            raise RegistryError(f"{where}: key '{key}': '{value}' needs EXP@key=value "
                                f"(several: EXP@a=1@b=2)")
        return Reference(kind, target)
    if value in raw:
        if value == name:
            raise RegistryError(f"{where}: key '{key}': an experiment cannot refer to itself")
        return Reference("experiment", value)
    if kind == "file":
        return Reference("file", value)
    raise RegistryError(
        f"{where}: key '{key}': unknown reference '{value}' (not an experiment, run:<id>, "
        f"best:EXP, EXP@key=value or a file path){_suggest(value, raw)}"
    )


def _has_param(params: dict[str, Any], name: str) -> bool:
    return name in params or name in params.get("params", {})


def _param_names(params: dict[str, Any]) -> list[str]:
    return [*params, *params.get("params", {})]


# ── type checks ─────────────────────────────────────────────────────────────────────────────

_KIND_NAMES = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "list[str]": "a list of strings",
    "classes": "a list of class names or a table of class -> [classes]",
    "weights": "a table of source -> weight",
    "table": "a table",
    "memory": 'a size such as "10GiB" or "512MiB"',
    "globs": "a list of glob patterns, or a table of role (best, last) -> glob",
}


def _is_kind(kind: str, value: Any) -> bool:
    checks: dict[str, Callable[[Any], bool]] = {
        "str": lambda v: isinstance(v, str),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "bool": lambda v: isinstance(v, bool),
        "list[str]": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
        "table": lambda v: isinstance(v, dict),
        "memory": lambda v: parse_memory(v) is not None,
        "globs": lambda v: (isinstance(v, list) and all(isinstance(x, str) and x for x in v))
        or (isinstance(v, dict) and bool(v) and set(v) <= {"best", "last"}
            and all(isinstance(x, str) and x for x in v.values())),
        "weights": lambda v: isinstance(v, dict)
        and all(isinstance(w, int | float) and not isinstance(w, bool) for w in v.values()),
        "classes": lambda v: (isinstance(v, list) and all(isinstance(x, str) for x in v) and v)
        or (
            isinstance(v, dict)
            and bool(v)
            and all(
                isinstance(x, list) and x and all(isinstance(s, str) for s in x)
                for x in v.values()
            )
        ),
    }
    return bool(checks[kind](value))


def _check_key(path: Path, where: str, key: str, value: Any, schema: dict[str, Key]) -> None:
    if key not in schema:
        raise RegistryError(f"{path}: {where}: unknown key '{key}'{_suggest(key, schema)}")
    spec = schema[key]
    if not _is_kind(spec.kind, value):
        raise RegistryError(
            f"{path}: {where}: key '{key}' must be {_KIND_NAMES[spec.kind]}, "
            f"got {type(value).__name__} {value!r}"
        )
    if spec.choices and value not in spec.choices:
        raise RegistryError(
            f"{path}: {where}: key '{key}' must be one of {', '.join(spec.choices)}; got {value!r}"
        )
    if spec.kind == "float" and not math.isfinite(value):
        raise RegistryError(f"{path}: {where}: key '{key}' must be a finite number, got {value}")
    if spec.kind in ("int", "float") and spec.out_of_range(value):
        raise RegistryError(
            f"{path}: {where}: key '{key}' must be {spec.range_text()}, got {value}"
        )
    if spec.kind == "weights":
        for src, weight in value.items():
            if not math.isfinite(weight):
                raise RegistryError(f"{path}: {where}: key '{key}': weight of '{src}' is {weight}")


def _check_keys(
    path: Path, where: str, table: dict[str, Any], schema: dict[str, Key], problems: list[str]
) -> None:
    """Every bad key of one table, each as its own line in `problems`."""
    for key, value in table.items():
        try:
            _check_key(path, where, key, value, schema)
        except RegistryError as exc:
            problems.append(str(exc))


def parse_override(path: Path, name: str, item: str) -> tuple[str, Any]:
    """`key=value` from the command line; the value is read as TOML, else as a string."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise RegistryError(f"{path}: experiment '{name}': --set '{item}' is not key=value")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    if isinstance(value, float) and key in KEYS and KEYS[key].kind == "int" and value.is_integer():
        value = int(value)
    return key, value


def _suggest(word: str, known: Iterable[str]) -> str:
    import difflib  # only on the error path

    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


# placeholders that become checkpoint files when the run starts (core/capture/references.py)
PATH_PLACEHOLDERS = ("pretrained", "teacher", "sources")


def substitute_command(exp: Experiment) -> list[str]:
    """The command line of a command experiment, placeholders replaced by resolved values.
    `{pretrained}`, `{teacher}` and `{sources}` are left for the worker: they become the
    checkpoint files of the runs they name, which may not have finished yet."""

    def value(match: re.Match[str]) -> str:
        key = match.group(1)
        if key in PATH_PLACEHOLDERS:
            return match.group(0)
        found = exp.params[key] if key in exp.params else exp.params["params"][key]
        return str(found).lower() if isinstance(found, bool) else str(found)

    return [PLACEHOLDER.sub(value, arg) for arg in exp.command or []]
