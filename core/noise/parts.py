"""What the noise recipes share: data as tensors, loading a teacher, predicting, evaluating."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.data import noise_index as dataset
from core.data.cache import AudioCache
from core.data.features import LogMel, MelSettings
from core.errors import RunError
from core.noise import augment, metrics
from core.noise.clips import Clips, Norm, model_input
from core.noise.clips import load as load_clips
from core.noise.keep import keep
from core.noise.models import AudioEncoder, TextHead
from core.runs import refs
from core.runs.context import RunContext
from core.training import checkpoint
from core.training.plots import confusion
from core.util.files import atomic_write_text, csv_text

PREDICT_BATCH = 256


def log(message: str) -> None:
    print(message, flush=True)


def device_of(ctx: RunContext) -> torch.device:
    from core.training.loop import run_device

    return run_device(ctx)


def source(ctx: RunContext, key: str = "data") -> dataset.Source:
    name, table = ctx.data_source(key)
    return dataset.Source.from_config(name, table)


def rows_of(
    ctx: RunContext, key: str, sample_rate: int, seconds: float
) -> tuple[dataset.Source, list]:
    src = source(ctx, key)
    return src, dataset.ensure(src, sample_rate, seconds, log=log, cache=AudioCache(ctx.cache_dir))


def clips(
    ctx: RunContext, rows: list, settings: MelSettings, seconds: float, device: torch.device
) -> Clips:
    return load_clips(rows, settings, seconds, ctx.cache_dir, device)


def mel_meta(settings: MelSettings, seconds: float, norm: Norm) -> dict[str, Any]:
    return {"mel": asdict(settings), "segment_seconds": seconds, **norm.to_meta()}


@dataclass
class Inputs:
    """Turns a batch's waves or cached mels into model input, augmenting when asked."""

    settings: MelSettings
    norm: Norm
    kind: str = "none"  # augmentation
    snr_db: float = 20.0

    def __post_init__(self) -> None:
        self.logmel = LogMel(self.settings)

    def from_waves(
        self, waves: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        if generator is not None and self.kind != "none":
            waves = augment.apply(self.kind, waves, generator, self.snr_db)
        return model_input(self.norm(self.logmel(waves)))

    def __call__(
        self, batch: dict[str, torch.Tensor], generator: torch.Generator | None, train: bool
    ) -> torch.Tensor:
        if train and self.kind != "none":
            return self.from_waves(batch["w"], generator)
        return model_input(self.norm(batch["x"]))


@dataclass
class Teacher:
    encoder: AudioEncoder
    head: TextHead
    meta: dict[str, Any]
    encoder_path: Path
    sha256: str
    reference: str

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def settings(self) -> MelSettings:
        return MelSettings(**self.meta["mel"])

    @property
    def norm(self) -> Norm:
        return Norm.from_meta(self.meta)

    def parent(self) -> dict[str, Any]:
        return {"checkpoint": refs.checkpoint_id(self.encoder_path), "relation": "teacher"}

    def to(self, device: torch.device) -> Teacher:
        self.encoder.to(device).eval()
        self.head.to(device).eval()
        return self


def load_teacher(ctx: RunContext, which: str = "best") -> Teacher:
    from core.util.checksum import sha256_file

    enc_path = refs.checkpoint_path(ctx, "teacher", "teacher", "encoder", which)
    cls_path = refs.checkpoint_path(ctx, "teacher", "teacher", "classifier", which)
    enc, cls = teacher_pair(enc_path, cls_path)
    meta = enc["meta"]
    encoder, head = encoder_and_head(enc, cls)
    ref = refs.reference(ctx, "teacher")
    log(f"teacher: {enc_path} ({which}, epoch {meta.get('epoch')}, classes {meta['classes']})")
    return Teacher(encoder, head, meta, enc_path, sha256_file(enc_path), ref["target"])


def teacher_pair(enc_path: Path, cls_path: Path) -> tuple[dict, dict]:
    """A teacher's encoder and classifier checkpoints, refused unless both are nkd teacher
    parts of one training (launch checks a named file with this too)."""
    enc = checkpoint.load(enc_path, kind="teacher_encoder")
    cls = checkpoint.load(cls_path, kind="teacher_classifier")
    if cls["meta"].get("text_hash") != enc["meta"].get("text_hash"):
        raise RunError(
            f"teacher {enc_path.parent.name}: encoder and classifier come from different "
            f"trainings (text embedding hash {enc['meta'].get('text_hash')} vs "
            f"{cls['meta'].get('text_hash')})"
        )
    return enc, cls


def student_pair(enc_path: Path, what: str = "student") -> tuple[dict, dict]:
    """A student's encoder checkpoint and the head beside it (`..._encoder` -> `..._head`)."""
    head_path = enc_path.with_name(enc_path.name.replace("_encoder", "_head"))
    if head_path == enc_path or not head_path.is_file():
        raise RunError(f"{what}: no student head {head_path.name} beside {enc_path.name}")
    return (checkpoint.load(enc_path, kind="student_encoder"),
            checkpoint.load(head_path, kind="student_head"))


def encoder_and_head(encoder_ckpt: dict, head_ckpt: dict) -> tuple[AudioEncoder, TextHead]:
    """An audio encoder and its ViLD-text head, rebuilt from their checkpoints."""
    meta = encoder_ckpt["meta"]
    encoder = AudioEncoder(int(meta["embed_dim"]), tuple(meta["channels"]))
    encoder.load_state_dict(encoder_ckpt["state_dict"])
    state = head_ckpt["state_dict"]
    head = TextHead(state["text"], float(meta["temperature"]), background="background" in state)
    head.load_state_dict(state)
    return encoder, head


@dataclass
class Splits:
    """A labelled source's train and validation clips, as the experiment's classes see them."""

    settings: MelSettings
    seconds: float
    source: dataset.Source
    rows: list
    names: list[str]
    train: Clips
    val: Clips
    y_train: torch.Tensor
    y_val: torch.Tensor
    norm: Norm


def labeled_splits(ctx: RunContext, device: torch.device) -> Splits:
    p = ctx.params
    settings, seconds = MelSettings.from_params(p), float(p["segment_seconds"])
    src, rows = rows_of(ctx, "data", settings.sample_rate, seconds)
    names, _ = dataset.class_map(p["classes"])
    train_rows, ytr = dataset.select(rows, p["classes"], src.name, ("train",))
    val_rows, yva = dataset.select(rows, p["classes"], src.name, ("val",))
    if not val_rows:
        raise RunError(f"data source '{src.name}': no validation clips for classes {names}")
    tr = clips(ctx, train_rows, settings, seconds, device)
    va = clips(ctx, val_rows, settings, seconds, device)
    return Splits(
        settings,
        seconds,
        src,
        rows,
        names,
        tr,
        va,
        torch.tensor(ytr),
        torch.tensor(yva),
        Norm.fit(tr.mels),
    )


class Feed:
    """An epoch's training batches, keeping the epoch's generator for the augmentations."""

    def __init__(self, batcher) -> None:
        self.batcher = batcher
        self.generator: torch.Generator | None = None

    def __call__(self, generator: torch.Generator):
        self.generator = generator
        return self.batcher.batches(generator)


def fit_best(
    ctx: RunContext,
    prefix: str,
    parts: dict,
    step,
    feed: Feed,
    val,
    meta: dict,
    device: torch.device,
    **options,
) -> None:
    """Train through the shared loop, put the best epoch's weights back, record which it was."""
    from core.training.loop import Trainer

    trainer = Trainer(ctx, prefix, parts, step, feed, val.batches, meta, device, **options)
    result = trainer.fit()
    trainer.load_best()
    ctx.reporter.metric("best_epoch", result["best_epoch"])


def check_classes(
    teacher: Teacher, names: list[str], prompts: list[str] | None, where: str
) -> None:
    """Seed 000's warning: label order -> prompts -> embeddings must be the teacher's exactly."""
    if names != teacher.classes:
        raise RunError(
            f"{where}: class order {names} differs from teacher "
            f"{teacher.encoder_path.parent.name}'s "
            f"{teacher.classes}; the text embeddings would not line up (use the teacher's classes)"
        )
    if prompts is not None and prompts != teacher.meta["prompts"]:
        raise RunError(
            f"{where}: prompts {prompts} differ from the teacher's {teacher.meta['prompts']}"
        )


@torch.no_grad()
def embed_and_classify(
    encoder: torch.nn.Module,
    head: TextHead,
    mels: torch.Tensor,
    norm: Norm,
    device: torch.device,
    text: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings [N, D] and class probabilities [N, C] of cached mels, in batches."""
    encoder.to(device).eval()
    head.to(device).eval()
    embs, probs = [], []
    for i in range(0, mels.shape[0], PREDICT_BATCH):
        x = model_input(norm(mels[i : i + PREDICT_BATCH].to(device)))
        e = encoder(x).float()
        embs.append(e.cpu())
        probs.append(head.class_logits(e, text).softmax(dim=1).cpu())
    return torch.cat(embs), torch.cat(probs)


@torch.no_grad()
def logits_of(
    model: torch.nn.Module, mels: torch.Tensor, norm: Norm, device: torch.device
) -> torch.Tensor:
    model.to(device).eval()
    out = [
        model(model_input(norm(mels[i : i + PREDICT_BATCH].to(device)))).float().cpu()
        for i in range(0, mels.shape[0], PREDICT_BATCH)
    ]
    return torch.cat(out)


def evaluate(
    ctx: RunContext,
    probs: np.ndarray,
    y: np.ndarray,
    names: list[str],
    rows: list,
    split: str,
    prefix: str = "",
    files: bool = True,
) -> dict[str, float]:
    """Record accuracy, macro-F1 and ROC AUC as metrics; write the confusion matrix and details."""
    values = metrics.summary(y, probs)
    caveat = metrics.caveat(y, len(names), split)
    for name, value in values.items():
        if not np.isnan(value):
            ctx.reporter.metric(f"{prefix}{name}", value, split=split,
                                **({"caveat": caveat} if caveat else {}))
    log(
        f"{prefix or 'model '}{split}: "
        + ", ".join(f"{k} {v:.4f}" for k, v in values.items())
        + f" ({len(y)} clips)" + (f"; {caveat}" if caveat else "")
    )
    if not files:
        return values
    tag = f"{prefix}" if prefix else ""
    matrix = metrics.confusion_matrix(y, probs.argmax(1), len(names)).tolist()
    atomic_write_text(
        ctx.run_dir / f"{tag}confusion_matrix.csv",
        csv_text(
            [["true \\ predicted", *names]] + [[n, *r] for n, r in zip(names, matrix, strict=True)]
        ),
    )
    confusion(
        ctx.run_dir / f"{tag}confusion_matrix.png",
        matrix,
        names,
        f"{ctx.run_id} {tag}{split} (accuracy {values['accuracy']:.3f})",
    )
    write_details(ctx.run_dir / f"{tag}prediction_details.csv", rows, y, probs, names)
    keep(ctx.run_dir, split, names, y, probs, rows, int(ctx.params["results_tracks"]),
         int(ctx.params["sample_rate"]))
    return values


def write_details(
    path: Path, rows: list, y: np.ndarray, probs: np.ndarray, names: list[str]
) -> None:
    table = [["path", "offset", "label", "predicted", "correct", *[f"p_{n}" for n in names]]]
    pred = probs.argmax(1)
    for r, t, p, pr in zip(rows, y, pred, probs, strict=True):
        table.append([r.path, r.offset, names[t], names[p], int(t == p), *[f"{v:.5f}" for v in pr]])
    atomic_write_text(path, csv_text(table))


def eval_rows(
    rows: list, classes: Any, name: str, ctx: RunContext | None = None,
    sample_rate: int = 16000, seconds: float = 1.0,
) -> tuple[list, list[int], str]:
    """What a noise run is scored on: every labelled clip of `test_data` when the run names one
    (a source or a folder), else the test split of `rows`, or their validation split when the
    data has no test files."""
    if ctx is not None and ctx.params.get("test_data"):
        src, test_rows = rows_of(ctx, "test_data", sample_rate, seconds)
        chosen, y = dataset.select(test_rows, classes, src.name, ("train", "val", "test"))
        if not chosen:
            raise RunError(f"test_data '{src.name}': no clip of the classes "
                           f"{dataset.class_map(classes)[0]}")
        return chosen, y, "test"
    chosen, y = dataset.select(rows, classes, name, ("test",))
    if chosen:
        return chosen, y, "test"
    chosen, y = dataset.select(rows, classes, name, ("val",))
    return chosen, y, "val"


def augment_for(p: dict[str, Any], who: str) -> str:
    kind = p["augment"]
    return kind if p["augment_target"] in (who, "both") else "none"


def labels_tensor(y: list[int]) -> torch.Tensor:
    return torch.tensor(y, dtype=torch.long)


def class_map(classes: Any) -> dict[str, list[str]]:
    return (
        {k: list(v) for k, v in classes.items()}
        if isinstance(classes, dict)
        else {c: [c] for c in classes}
    )
