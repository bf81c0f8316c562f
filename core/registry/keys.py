"""The registry's schema: every key an experiment or data source may carry (type, range, meaning,
the recipes that need it) and the names of the top-level tables."""

from __future__ import annotations

import re
from dataclasses import dataclass

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
    "model": Key("str", "separation model", ("crnn", "unet_crnn", "mask_lstm")),
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
    "loss": Key("str", "separation loss on masked magnitudes: l1 (the median: sparse stems such "
                "as drums fade), mse (the mean)", ("l1", "mse")),
    "wiener_iterations": _pos("int", "multichannel Wiener filter passes over the estimates at "
                              "inference (0: the masks alone)", lo_open=False),
    "select_by": Key("str", "which epoch's weights are kept as best: the lowest validation loss, "
                     "or the highest validation SDR (BSS Eval of val_data each epoch)",
                     ("val_loss", "val_sdr")),
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


# ── loading ─────────────────────────────────────────────────────────────────────────────────


# ── type checks ─────────────────────────────────────────────────────────────────────────────


