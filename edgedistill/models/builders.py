"""Named model builders: the backbone a fine-tuning starts from, and the small HuBERT-shaped
teacher a run trains itself when no pretrained teacher can be downloaded."""

from __future__ import annotations

from pathlib import Path

import torch

from edgedistill.models.teacher import load_teacher


def backbone_source(spec: str) -> str:
    """The folder or name `load_backbone` reads (a distill --out folder's `student/`), checked
    without loading weights: a missing or non-speech model fails here, naming `--model`.

    Raises:
        TeacherNotFoundError, NotASpeechModelError
    """
    from edgedistill.models.teacher import BUILTIN_TEACHERS, find_speech_config

    p = Path(spec)
    if (p / "student" / "config.json").exists():
        spec = str(p / "student")
    if spec not in BUILTIN_TEACHERS:
        find_speech_config(spec, flag="--model", what="model")
    return spec


def load_backbone(spec: str, seed: int = 0) -> tuple[torch.nn.Module, bool]:
    """(trainable HF speech model, do_normalize) from a distill --out folder, a student
    folder, an HF id/path or a builtin:* name."""
    spec = backbone_source(spec)
    teacher = load_teacher(spec, seed=seed, flag="--model", what="model")
    model = teacher.model
    model.requires_grad_(True)
    return model, teacher.do_normalize


def small_hubert_config(layers: int, hidden: int, cnn: int):
    """A HuBERT of `layers` x `hidden` (heads = hidden / 64, FFN 4 x hidden) with a thin CNN
    (c/4, c/2 x 4, c, c channels for last width c) to be trained from random weights.

    Its training recipe, not a real checkpoint's: no layer drop and no time masking (a small
    model trained from scratch on keywords learns nothing useful with either), a 32-sample
    positional convolution in 16 groups (`hidden` must be a multiple of 16).
    """
    from transformers import HubertConfig

    return HubertConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64),
                        intermediate_size=4 * hidden,
                        conv_dim=[max(1, cnn // 4)] + [max(1, cnn // 2)] * 4 + [cnn, cnn],
                        num_conv_pos_embeddings=32, num_conv_pos_embedding_groups=16, layerdrop=0.0,
                        mask_time_prob=0.0)


def save_small_hubert(folder: str | Path, layers: int, hidden: int, cnn: int, seed: int = 0) -> str:
    """Writes a seeded random `small_hubert_config` model (+ its feature extractor) to
    `folder` unless one is there; returns the folder."""
    from transformers import HubertModel, Wav2Vec2FeatureExtractor

    folder = Path(folder)
    if not (folder / "config.json").exists():
        torch.manual_seed(seed)
        HubertModel(small_hubert_config(layers, hidden, cnn)).save_pretrained(folder)
        Wav2Vec2FeatureExtractor(do_normalize=False, return_attention_mask=False).save_pretrained(folder)
    return str(folder)


def random_teacher(spec: str) -> torch.nn.Module:
    """A random-weight teacher of a shape (for timing: speed depends on the shape alone): a
    `builtin:*` name, or `small:LAYERSxHIDDENxCNN`, the small HuBERT a recipe trains with
    `teacher: train` (`teacher_training.layers / hidden / cnn`, e.g. `small:6x256x256`)."""
    if spec.startswith("small:"):
        from transformers import HubertModel

        try:
            layers, hidden, cnn = (int(v) for v in spec[len("small:"):].split("x"))
        except ValueError:
            raise ValueError(f"'{spec}': write small:LAYERSxHIDDENxCNN, e.g. small:6x256x256") from None
        return load_teacher(HubertModel(small_hubert_config(layers, hidden, cnn)).eval()).model
    return load_teacher(spec).model

