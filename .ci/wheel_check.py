"""CI: what a user gets from `pip install edgedistill` (a wheel, not an editable checkout).

Run with the python of a clean venv that has the wheel installed, from outside the checkout:
it builds a tiny multi-task model, exports and quantizes it with the installed `edgedistill`
command, and runs the device kit's infer.py on a clip; checks the shipped recipes are found and
the embedded teacher builds from its installed recipe.
"""

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from transformers import AutoModel

import edgedistill
from edgedistill.models.multitask import MultiTaskModel
from edgedistill.models.teacher import tiny_config

pkg = Path(edgedistill.__file__).resolve().parent
assert "site-packages" in str(pkg), f"edgedistill imported from {pkg}, not from the installed wheel"
assert (pkg / "kit" / "infer.py").is_file(), "the wheel does not ship the device kit"
from edgedistill.recipes.run import recipe_path  # noqa: E402

assert recipe_path("demo") == pkg / "configs" / "demo.yaml", "the wheel does not ship the recipes (edgedistill demo)"
from edgedistill.models import teacher as teacher_mod  # noqa: E402

assert teacher_mod.embedded_teacher_recipe() == pkg / "configs" / "embedded_teacher.yaml", "no embedded teacher recipe"
assert len(teacher_mod.embedded_teacher_reference()["sha256"]) == 64, "the wheel does not ship the reference provenance"
with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    # the embedded teacher is built on first use from the installed recipe (here at a tiny size)
    import os

    os.environ["EDGEDISTILL_CACHE"] = str(tmp / "cache")
    from edgedistill.data.corpus import CorpusConfig, build_corpus
    from edgedistill.recipes.embedded_teacher import build_embedded_teacher

    corpus = build_corpus(CorpusConfig(keywords=["yes", "no"], num_speakers=4, takes=2, splits=(3, 1, 0)),
                          root=tmp / "corpus")
    build_embedded_teacher(overrides=[f"data={corpus}", "teacher_training.layers=2", "teacher_training.hidden=64",
                                      "teacher_training.cnn=32", "teacher_training.steps=2",
                                      "teacher_training.eval_every=2", "distill.steps=1", "finetune.steps=1",
                                      "finetune.batch_size=4", "finetune.num_trials=50"])
    assert teacher_mod.load_teacher("embedded").model.config.num_hidden_layers == 2, "embedded teacher not found"
    torch.manual_seed(0)
    MultiTaskModel(AutoModel.from_config(tiny_config("hubert")), ["yes", "no"], 2).save_pretrained(tmp / "ft" / "model")
    exe = str(Path(sys.executable).parent / "edgedistill")
    subprocess.run([exe, "export", "--model", str(tmp / "ft"), "--out", str(tmp / "deploy"),
                    "--quantize", "int8-dynamic"], check=True)
    for name in ("model.fp32.onnx", "model.int8-dynamic.onnx", "infer.py", "requirements.txt", "DEVICE.md",
                 "edgedistill/runtime/model.py", "edgedistill/runtime/metadata.py"):
        assert (tmp / "deploy" / name).is_file(), name
    sf.write(tmp / "clip.wav", (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32), 16000)
    out = subprocess.run([sys.executable, "infer.py", "model.int8-dynamic.onnx", str(tmp / "clip.wav")],
                         cwd=tmp / "deploy", check=True, capture_output=True, text=True).stdout
    assert out.strip().split(":")[1].split()[0] in ("yes", "no"), out
print("wheel check: installed from", pkg, "- export, int8-dynamic and the device kit work")
