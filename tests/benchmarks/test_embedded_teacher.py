import json

import pytest

from edgedistill.models.teacher import embedded_teacher_path, load_teacher
from tests.benchmarks import load_benchmark

TINY = ["teacher_training.layers=2", "teacher_training.hidden=64", "teacher_training.cnn=32",
        "teacher_training.steps=6", "teacher_training.eval_every=3", "distill.steps=2", "finetune.steps=2",
        "finetune.batch_size=8", "finetune.num_trials=200"]


def test_trains_the_recipe_teacher_and_writes_a_loadable_folder_with_its_provenance(small_corpus, tmp_path):
    mod = load_benchmark("embedded_teacher")
    dest = tmp_path / "assets" / "embedded_teacher"
    prov = mod.main(["--dest", str(dest), f"out={tmp_path / 'run'}", f"data={small_corpus}", *TINY])
    assert sorted(p.name for p in dest.iterdir()) == ["PROVENANCE.json", *mod.FILES]
    assert json.loads((dest / "PROVENANCE.json").read_text()) == prov
    # the recipe's early stopping: at least the demo student's steps (2 + 2), then until val stalls
    assert prov["steps_done"] == 6 and prov["best_step"] in (3, 6) and prov["finetune"]["min_steps"] == 4
    assert prov["data"] == str(small_corpus) and prov["torch_threads"] >= 1 and len(prov["sha256"]) == 64
    assert load_teacher(str(dest)).model.config.num_hidden_layers == 2
    # a second call resumes the finished training and replaces the folder whole
    assert mod.main(["--dest", str(dest), f"out={tmp_path / 'run'}", f"data={small_corpus}", *TINY])["sha256"] \
        == prov["sha256"]
    assert not list(dest.parent.glob("*.tmp-*"))
    with pytest.raises(SystemExit, match="trained here on `data`"):
        mod.main(["--dest", str(dest), f"out={tmp_path / 'r2'}", "teacher=embedded"])


def test_the_shipped_embedded_teacher_is_the_one_its_provenance_describes():
    import hashlib

    folder = embedded_teacher_path()
    prov = json.loads((folder / "PROVENANCE.json").read_text())
    assert hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest() == prov["sha256"]
    teacher = load_teacher("embedded")
    shape = prov["teacher_training"]
    assert (teacher.model.config.num_hidden_layers, teacher.model.config.hidden_size) == (shape["layers"], 128)
    assert prov["command"].startswith("python benchmarks/embedded_teacher.py")
    assert prov["val"]["kws_accuracy"] > 0.9  # it learned the keywords: a teacher worth distilling
