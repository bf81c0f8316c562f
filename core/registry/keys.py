"""The registry's schema: every key an experiment or data source may carry (type, range, meaning,
the recipes that need it) and the names of the top-level tables."""

from __future__ import annotations

import re

# ── key schema ──────────────────────────────────────────────────────────────────────────────
# Every key an experiment may carry: its type, range, default and meaning. Types are checked on
# load and on `--set`; `nkd keys` shows them all; a run's resolved settings fill in the defaults.
from core.registry.key import (  # noqa: F401 - the schema's types, read with KEYS
    BUILTIN,
    COMMAND,
    NO_DEFAULT,
    SELECT_BY,
    TRAINING,
    Key,
    Per,
)
from core.registry.key import positive as _pos
from core.registry.recipe_keys import RECIPE_KEYS
from core.registry.retention import DEFAULT as DEFAULT_KEEP

KEYS: dict[str, Key] = {
    # identity and wiring
    "group": Key("str", "group shown in the TUI tree (noise, kd, separation, ...)"),
    "description": Key("str", "one line saying what the experiment is"),
    "recipe": Key("str", "built-in recipe, e.g. noise.teacher or separation.train"),
    "command": Key(
        "list[str]", "the researcher's own script; {key} is replaced by that value", used_by=COMMAND
    ),
    "cwd": Key(
        "str",
        "working directory of a command experiment, relative to the registry",
        default=".",
        used_by=COMMAND,
    ),
    "env": Key("table", "extra environment variables for the worker"),
    "params": Key("table", "free-form parameters of a command experiment"),
    "output_scalars": Key(
        "list[str]",
        "regular expressions whose named groups are values a "
        "command prints, e.g. 'val SDR: (?P<sdr>\\S+)'; (?P<epoch>...) sets "
        "the epoch",
        default=[],
        used_by=COMMAND,
    ),
    "checkpoints": Key(
        "globs",
        "checkpoint files the script writes: globs relative to the "
        "registry, {key} from the settings; a table {best = ..., last = ...} "
        "names their roles",
    ),
    "tensorboard_dir": Key(
        "str",
        "where the script's SummaryWriter writes (relative to the "
        "registry, {key} from the settings); its scalars are recorded per "
        "step. The run's folder is always followed",
    ),
    "on_finish": Key(
        "list[str]",
        'a command run when the run ends, e.g. ["notify-send", '
        '"{run_id} {status}"]; {run_id} {status} {experiment} {run_dir}',
    ),
    "evaluates": Key(
        "str",
        "this command scores the checkpoint of this reference: its results "
        "go on that checkpoint's lineage node",
        ("pretrained", "teacher"),
    ),
    "checkpoint_copy": Key(
        "str",
        "what nkd keeps of a matched checkpoint in the run's folder",
        ("link", "copy", "none"),
        default="link",
        used_by=COMMAND,
    ),
    "builtin_scalars": Key(
        "bool",
        "read common log shapes (Keras, Lightning, tqdm, key: value) "
        "from a command's output",
        default=True,
        used_by=COMMAND,
    ),
    "extends": Key("str", "experiment whose settings this one starts from"),
    "tags": Key("list[str]", "free labels"),
    "reported": Key("table", "values the researcher reported before nkd (sdr_db, note, ...)"),
    # references
    "data": Key("str", "named data source ([data.NAME])"),
    "val_data": Key("str", "named data source used for validation"),
    "test_data": Key(
        "str",
        "named data source scored as the test split (metrics split=test; "
        "a gain correction is fitted on val_data and applied unchanged)",
    ),
    "eval_data": Key("str", "named data source used for evaluation"),
    "pretrained": Key(
        "str",
        "weights to start from: experiment name, run:<run_id>, best:EXP, EXP@key=value or a file",
    ),
    "teacher": Key(
        "str", "teacher: experiment name, run:<run_id>, best:EXP, EXP@key=value or a file"
    ),
    "sources": Key("weights", "blend sources and their weights, summing to 1"),
    # common training settings
    "seed": _pos(
        "int",
        "random seed; stored with the run",
        lo_open=False,
        default=0,
        used_by=BUILTIN + COMMAND,
    ),
    "device": Key(
        "device", "auto (cuda if available), cpu, cuda or cuda:N", default="auto",
        used_by=BUILTIN,
    ),
    "epochs": _pos("int", "maximum number of epochs", default=10, used_by=TRAINING),
    "lr": _pos("float", "learning rate", default=1e-3, used_by=TRAINING),
    "batch_size": _pos(
        "int",
        "batch size",
        default=Per("family", {"noise": 16, "separation": 8}),
        used_by=TRAINING + ("separation.evaluate", "separation.blend"),
    ),
    "patience": _pos(
        "int",
        "early-stopping patience in epochs (0 = off)",
        lo_open=False,
        default=0,
        used_by=TRAINING,
    ),
    "optimizer": Key(
        "str", "optimizer", ("adam", "adamw", "sgd"), default="adam", used_by=TRAINING
    ),
    "weight_decay": _pos(
        "float", "optimizer weight decay", lo_open=False, default=0.0, used_by=TRAINING
    ),
    "scheduler": Key(
        "str",
        "learning-rate schedule",
        ("none", "plateau", "cosine"),
        default="none",
        used_by=TRAINING,
    ),
    "num_workers": _pos(
        "int",
        "DataLoader worker processes",
        lo_open=False,
        used_by=TRAINING,
        rule="4 beside a GPU, none on the CPU; a [defaults] value applies beside a GPU only",
    ),
    "threads": _pos(
        "int",
        "torch and BLAS threads of the run (default: torch's, or the run's "
        "share of the cores when other runs are active)",
        used_by=BUILTIN + COMMAND,
        rule="torch's own, or the run's share of the cores when other runs are active",
    ),
    "amp": Key("bool", "bf16 autocast on CUDA", default=True, used_by=TRAINING),
    "accumulate": _pos(
        "int",
        "batches whose gradients are summed per optimiser step (1 = off)",
        default=1,
        used_by=TRAINING,
    ),
    "grad_clip": _pos(
        "float",
        "clip the gradient norm to this value (0 = off)",
        lo_open=False,
        default=0.0,
        used_by=TRAINING,
    ),
    "compile": Key(
        "bool",
        "run the model through torch.compile (eager, with the reason, where it cannot compile)",
        default=False,
        used_by=TRAINING,
    ),
    "checkpoint_every": _pos(
        "int", "write the last checkpoint every N epochs", default=1, used_by=TRAINING
    ),
    "keep_checkpoints": Key(
        "keep",
        'which checkpoints a run keeps as it goes: "best" (always), "best:K" (the K best '
        'epochs, each in a file of its own), "last", "every:N" (epochs N, 2N, ... for good)',
        default=DEFAULT_KEEP,
        used_by=TRAINING,
    ),
    # placement and the queue
    "gpus": _pos(
        "int",
        "GPUs a run needs (default 1 for built-in recipes, 0 for commands; "
        "ignored on a box without GPUs)",
        lo_open=False,
        default=Per("family", {"command": 0}, otherwise=1),
    ),
    "gpu_memory": Key("memory", 'free memory a GPU must have for the run, e.g. "10GiB"'),
    "priority": Key("int", "queue priority: higher starts first", default=0),
    "backend": Key(
        "str",
        "where runs execute: this box, or the Slurm cluster of [backends.slurm]",
        ("local", "slurm"),
        default="local",
    ),
    **RECIPE_KEYS,
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

TOP_LEVEL = (
    "defaults",
    "data",
    "experiments",
    "queue",
    "sweeps",
    "backends",
    "workspace",
    "include",
)
REFERENCE_KEYS = ("pretrained", "teacher")
DATA_REF_KEYS = ("data", "val_data", "test_data", "eval_data")
ON_FINISH_FIELDS = ("run_id", "status", "experiment", "run_dir")
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")


# ── resolved objects ────────────────────────────────────────────────────────────────────────


# ── loading ─────────────────────────────────────────────────────────────────────────────────


# ── type checks ─────────────────────────────────────────────────────────────────────────────
