"""The keys of the built-in recipes' own settings: audio features, noise classification and
distillation, source separation (their type, range, default and which recipes read them). The
general keys (identity, references, training, placement) are in core/registry/keys.py."""

from __future__ import annotations

from core.registry.key import (
    BUILTIN,
    COMMAND,
    HYBRID,
    NOISE,
    SELECT_BY,
    SEP_TRAIN,
    SEPARATION,
    TRAINING,
    Key,
    Per,
)
from core.registry.key import positive as _pos

RECIPE_KEYS: dict[str, Key] = {
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
        "who hears augmented clips: student (ESKD: the teacher's soft label from the clean "
        "clip), both (hybrid KD: one augmented clip for teacher and student), teacher",
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
    "results_tracks": _pos(
        "int",
        "tracks (separation) or clips (noise) an evaluation keeps as listenable excerpts with "
        "spectrograms: the worst, the median and the best; 0 keeps only the per-second scores",
        lo_open=False,
        default=3,
        used_by=BUILTIN,
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
