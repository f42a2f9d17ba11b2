"""Recipe: evaluate a saved multi-task model on any labelled data and split.

    edgedistill evaluate --model runs/finetune/model --data MANIFEST --split val --out report.json
    edgedistill evaluate --model runs/demo/export/model.int8.onnx --data MANIFEST --split val

A `.onnx` model is scored with onnxruntime alone (the exact file you deploy); a folder with
PyTorch, on the same clips, crops and trials, so the two reports compare.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgedistill.data.layouts import resolve_labelled
from edgedistill.data.trials import official_trials


def evaluate(model_dir: str, data: str, split: str | None, out: str | None = None,
             num_trials: int = 20_000, seed: int = 0, batch_size: int = 32,
             clip_samples: int = 16_000, progress: bool = True) -> dict:
    """Accuracy, EER, minDCF, trial / speaker / clip counts of `model_dir` on `data`/`split`.

    VoxCeleb's test split is scored on its official trial list when DIR holds one; other
    data on `num_trials` trials drawn from its speakers with `seed`.
    """
    clips = resolve_labelled(data, split)
    trials = official_trials(data, clips, split)
    if str(model_dir).endswith(".onnx"):
        from edgedistill.evaluation.scores import evaluate_onnx

        full = evaluate_onnx(model_dir, clips, num_trials, seed, clip_samples, trials=trials)
        report = {k: v for k, v in full.items() if not isinstance(v, np.ndarray)}
    else:
        from edgedistill.training.evaluation import evaluate_model
        from edgedistill.models.multitask import MultiTaskModel

        model = MultiTaskModel.from_pretrained(model_dir)  # the finetune --out folder or its model/
        report = evaluate_model(model, clips, clip_samples, batch_size, num_trials, seed,
                                progress=progress, trials=trials)
    report = {"model": str(model_dir), "data": str(data), "split": split, "trial_seed": seed, **report}
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(report, indent=1))
    return report
