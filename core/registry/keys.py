"""The registry's schema: every key an experiment or data source may carry (type, range, meaning,
the recipes that need it) and the names of the top-level tables."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# ── key schema ──────────────────────────────────────────────────────────────────────────────
# Every key an experiment may carry: its type and what it means. Types are checked on load and on
# `--set`; the comment is shown by `nkd show --keys`.


class _NoDefault:
    """The default of a key that has none: unset means off, absent or decided by a rule."""

    def __repr__(self) -> str:
        return "—"


NO_DEFAULT: Any = _NoDefault()

# who reads a key: recipe names, a family's pattern ("noise.*") or "command"
BUILTIN = ("noise.*", "separation.*")
TRAINING = ("noise.teacher", "noise.student", "noise.hybrid_kd", "separation.train")
NOISE = ("noise.*",)
SEPARATION = ("separation.*",)
COMMAND = ("command",)
# what a run may select its best epoch by: the epoch field it reads, and whether higher is better
SELECT_BY: dict[str, tuple[str, bool]] = {
    "val_loss": ("val_loss", False),
    "val_sdr": ("val_sdr", True),
    "val_accuracy": ("val_accuracy", True),
    "train_loss": ("train_loss", False),
}
SEP_TRAIN = ("separation.train",)
HYBRID = ("noise.hybrid_kd",)


@dataclass(frozen=True)
class Per:
    """A default that depends on another setting: the recipe's family (`on = "family"`) or the
    value of a key such as `model`."""

    on: str
    values: dict[str, Any]
    otherwise: Any = NO_DEFAULT

    def pick(self, settings: dict[str, Any], family: str) -> Any:
        which = family if self.on == "family" else settings.get(self.on)
        return self.values.get(which, self.otherwise)

    def text(self) -> str:
        shown = [
            f"{_show(v)} ({self.on} {k})" if self.on != "family" else f"{_show(v)} ({k})"
            for k, v in self.values.items()
        ]
        if self.otherwise is not NO_DEFAULT:
            shown.append(f"{_show(self.otherwise)} otherwise")
        return ", ".join(shown)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@dataclass(frozen=True)
class Key:
    kind: str  # str | int | float | bool | list[str] | str-or-list | classes | weights | table
    help: str
    choices: tuple[str, ...] = ()
    lo: float | None = None  # smallest allowed value (numbers)
    hi: float | None = None  # largest allowed value
    lo_open: bool = False  # lo itself is not allowed (lr > 0)
    hi_open: bool = False
    # the value a recipe uses when the key is not set: a value, a Per (by family or another
    # key), or NO_DEFAULT (unset means off or absent, or `rule` decides at run time)
    default: Any = NO_DEFAULT
    used_by: tuple[str, ...] = ()  # who reads it (the resolved settings of those runs hold it)
    rule: str = ""  # what decides the value at run time when no experiment sets it

    def default_for(self, settings: dict[str, Any], family: str) -> Any:
        if isinstance(self.default, Per):
            return self.default.pick(settings, family)
        return self.default

    def default_text(self) -> str:
        if self.rule:
            return self.rule
        if isinstance(self.default, Per):
            return self.default.text()
        return "" if self.default is NO_DEFAULT else _show(self.default)

    def read_by(self, recipe: str) -> bool:
        family = recipe.partition(".")[0]
        return any(u in (recipe, f"{family}.*") for u in self.used_by)

    def range_text(self) -> str:
        if self.lo is None and self.hi is None:
            return ""
        if self.hi is None:
            return f"{'>' if self.lo_open else '≥'} {self.lo:g}"
        if self.lo is None:
            return f"{'<' if self.hi_open else '≤'} {self.hi:g}"
        return (
            f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}"
            f"{')' if self.hi_open else ']'}"
        )

    def out_of_range(self, value: float) -> bool:
        if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
            return True
        return self.hi is not None and (value > self.hi or (self.hi_open and value == self.hi))


def _pos(
    kind: str,
    help: str,
    lo: float = 0,
    lo_open: bool = True,
    hi: float | None = None,
    hi_open: bool = False,
    **rest: Any,
) -> Key:
    return Key(kind, help, lo=lo, lo_open=lo_open, hi=hi, hi_open=hi_open, **rest)


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
        "str", "auto (cuda if available), cpu, cuda or cuda:N", default="auto", used_by=BUILTIN
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
    # audio features
    "sample_rate": _pos(
        "int",
        "sample rate in Hz",
        lo=1000,
        lo_open=False,
        default=Per("family", {"noise": 16000, "separation": 22050}),
        used_by=BUILTIN,
    ),
    "n_fft": _pos(
        "int",
        "STFT size",
        lo=16,
        lo_open=False,
        default=Per("family", {"noise": 512, "separation": 1024}),
        used_by=BUILTIN,
    ),
    "hop_length": _pos(
        "int",
        "STFT hop in samples",
        default=Per("family", {"noise": 160, "separation": 256}),
        used_by=BUILTIN,
    ),
    "n_mels": _pos("int", "mel bins", default=64, used_by=NOISE),
    "segment_seconds": _pos(
        "float",
        "length of one training segment in seconds",
        default=Per("family", {"noise": 1.0, "separation": 2.0}),
        used_by=("noise.*", "separation.train"),
    ),
    # noise classification / distillation
    "classes": Key("classes", "class list, or a mapping new class -> [original classes]"),
    "prompt": Key(
        "str",
        "text prompt template for class embeddings, with {class}",
        default="a sound of {class} in the room",
        used_by=NOISE,
    ),
    "text_model": Key(
        "str",
        "sentence-embedding model name or local path",
        default="all-MiniLM-L6-v2",
        used_by=NOISE,
    ),
    "temperature": _pos(
        "float", "cosine-logit temperature of the ViLD heads", default=0.07, used_by=NOISE
    ),
    "background_embedding": Key(
        "bool", "learn a background embedding beside the class texts", default=False, used_by=NOISE
    ),
    "alpha": _pos(
        "float",
        "hybrid KD weight of the soft (KL) term",
        lo_open=False,
        hi=1,
        default=0.7,
        used_by=HYBRID,
    ),
    "kd_temperature": _pos(
        "float", "hybrid KD softening temperature T", default=4.0, used_by=HYBRID
    ),
    "teacher_checkpoint": Key(
        "str", "which teacher weights (ESKD: best)", ("best", "last"), default="best", used_by=NOISE
    ),
    "augment": Key(
        "str",
        "augmentation",
        ("none", "removal", "noise", "shift", "mix1", "mix2"),
        default="none",
        used_by=NOISE,
    ),
    "augment_target": Key(
        "str",
        "who is trained on augmented data",
        ("teacher", "student", "both"),
        default="student",
        used_by=NOISE,
    ),
    "noise_snr_db": Key(
        "float", "SNR of injected Gaussian noise in dB", default=20.0, used_by=NOISE
    ),
    "cosine_weight": _pos(
        "float",
        "weight of the cosine term in the student's embedding loss",
        lo_open=False,
        default=0.0,
        used_by=("noise.student",),
    ),
    "ensemble": Key(
        "str",
        "how teacher and student are combined",
        ("mean", "geometric"),
        default="mean",
        used_by=("noise.ensemble",),
    ),
    "ensemble_weight": _pos(
        "float",
        "teacher weight in the ensemble (ViLD lambda = 2/3)",
        lo_open=False,
        hi=1,
        default=2 / 3,
        used_by=("noise.ensemble",),
    ),
    "zero_shot_classes": Key(
        "list[str]",
        "held-out noise types evaluated zero-shot",
        default=[],
        used_by=("noise.teacher",),
    ),
    "embed_dim": _pos("int", "embedding size of the audio encoder", default=384, used_by=NOISE),
    # source separation
    "model": Key(
        "str",
        "separation model",
        ("crnn", "unet_crnn", "mask_lstm"),
        default="crnn",
        used_by=SEP_TRAIN,
    ),
    "hidden_size": _pos("int", "LSTM hidden size", default=256, used_by=SEP_TRAIN),
    "num_layers": _pos("int", "LSTM layers", default=3, used_by=SEP_TRAIN),
    "dropout": _pos(
        "float",
        "dropout probability",
        lo_open=False,
        hi=1,
        hi_open=True,
        default=Per("model", {"unet_crnn": 0.4}, otherwise=0.0),
        used_by=SEP_TRAIN,
    ),
    "stems": Key(
        "list[str]",
        "stems to separate",
        default=["bass", "drums", "other", "vocals"],
        used_by=SEPARATION,
    ),
    "target_stem": Key("str", "train on this stem only; the others are silent"),
    "mask_scale": _pos(
        "float", "multiply predicted masks by this at inference", default=1.0, used_by=SEPARATION
    ),
    "threshold": _pos(
        "float",
        "zero mask values below this at inference",
        lo_open=False,
        hi=1,
        hi_open=True,
        default=0.0,
        used_by=SEPARATION,
    ),
    "gain_correction": Key(
        "bool",
        "estimate per-stem output gain on the validation set",
        default=False,
        used_by=SEPARATION,
    ),
    "remix_prob": _pos(
        "float",
        "probability of remixing stems from different tracks",
        lo_open=False,
        hi=1,
        default=0.0,
        used_by=SEP_TRAIN,
    ),
    "random_gain": Key(
        "bool", "random gain per stem during training", default=False, used_by=SEP_TRAIN
    ),
    "freeze": Key(
        "list[str]", "parameter-name prefixes kept frozen", default=[], used_by=SEP_TRAIN
    ),
    "rhythm_head": Key(
        "bool", "add the onset (rhythm) head of the U-Net CRNN", default=False, used_by=SEP_TRAIN
    ),
    "focal_gamma": _pos(
        "float",
        "focal-loss gamma of the rhythm head",
        lo_open=False,
        default=2.0,
        used_by=SEP_TRAIN,
    ),
    "loss": Key(
        "str",
        "separation loss on masked magnitudes: l1 (the median: sparse stems such "
        "as drums fade), mse (the mean)",
        ("l1", "mse"),
        default="l1",
        used_by=SEP_TRAIN,
    ),
    "wiener_iterations": _pos(
        "int",
        "multichannel Wiener filter passes over the estimates at inference (0: the masks alone)",
        lo_open=False,
        default=0,
        used_by=SEPARATION,
    ),
    "select_by": Key(
        "str",
        "which epoch's weights are kept as best: the lowest validation loss, the highest "
        "validation SDR (BSS Eval of val_data each epoch) or validation accuracy, or the "
        "lowest training loss (a run without validation falls back to it)",
        tuple(SELECT_BY),
        default="val_loss",
        used_by=TRAINING + COMMAND,
    ),
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
