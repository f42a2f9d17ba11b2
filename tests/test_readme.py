"""Every command line quoted in the README runs, as written, in README order.

Only what cannot exist here is substituted: hub models and datasets by tiny local ones
(`SUBSTITUTES`), and long trainings are cut short by `key=value` overrides appended to the
command (`FAST`). Runs in a scratch folder holding a copy of `configs/`.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edgedistill.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY_RUN = ["teacher_training.layers=2", "teacher_training.hidden=64", "teacher_training.cnn=32",
            "teacher_training.steps=4", "distill.steps=2", "distill.batch_size=4", "finetune.steps=4",
            "finetune.batch_size=8", "finetune.eval_every=4", "finetune.num_trials=200",
            "export.quantize=[int8-dynamic]", "export.calibration_clips=4", "benchmark.runs=1",
            "benchmark.num_trials=200", "stream.keywords=[]"]  # streaming in a run: tests/recipes/test_run.py
FAST = {
    "distill": ["steps=2", "batch_size=4", "max_samples=16000", "save_every=1", "log_every=1"],
    "finetune": ["steps=4", "batch_size=8", "eval_every=4", "num_trials=200"],
    "run": TINY_RUN, "demo": TINY_RUN,
    "export": ["calibration_clips=4"], "quantize": ["calibration_clips=4"],
}


def readme_commands() -> list[str]:
    """The lines of the README's bash blocks (continuations joined, comments dropped)."""
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(" ".join(words))
    return commands


def test_prose_names_no_command_that_the_blocks_do_not_run():
    text = (ROOT / "README.md").read_text()
    blocks = set(readme_commands())
    for span in re.findall(r"`(edgedistill [^`]*)`", text):
        words = span.split()
        if len(words) > 2 and not any(w.startswith(("-", "...")) or "=" in w for w in words[:2]):
            assert span in blocks or any(b.startswith(span) for b in blocks), span


def _speech_commands_tree(corpus: Path, root: Path) -> Path:
    """The small corpus laid out as Speech Commands: word folders, split lists, noise."""
    import csv

    val, test = [], []
    for r in csv.DictReader(open(corpus)):
        rel = f"{r['label']}/{r['speaker']}_nohash_{Path(r['path']).stem}.wav"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(corpus.parent / r["path"], root / rel)
        {"val": val, "test": test}.get(r["split"], []).append(rel)
    (root / "validation_list.txt").write_text("\n".join(val) + "\n")
    (root / "testing_list.txt").write_text("\n".join(test) + "\n")
    (root / "_background_noise_").mkdir()
    sf.write(root / "_background_noise_" / "pink.wav",
             0.01 * np.random.default_rng(0).standard_normal(16000 * 30).astype(np.float32), 16000)
    return root


def _voxceleb_tree(corpus: Path, root: Path) -> Path:
    """The small corpus laid out as VoxCeleb1: wav/idNNNNN/VIDEO/NNNNN.wav."""
    import csv

    rows = list(csv.DictReader(open(corpus)))
    ids = {s: f"id{10001 + i}" for i, s in enumerate(sorted({r["speaker"] for r in rows}))}
    for k, r in enumerate(rows):
        target = root / "wav" / ids[r["speaker"]] / "video1" / f"{k:05d}.wav"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(corpus.parent / r["path"], target)
    return root


def _long_recording(clips, path: Path) -> str:
    from edgedistill.data.manifest import load_clip

    sf.write(path, np.concatenate([np.concatenate([load_clip(c), np.zeros(8000, np.float32)]) for c in clips]), 16000)
    return str(path)


@pytest.fixture
def substitutes(small_corpus, embedded_corpus, tiny_hubert, tmp_path):
    from edgedistill.data.manifest import read_manifest

    tiny_hubert.save_pretrained(tmp_path / "hubert-base-ls960")
    clips = read_manifest(embedded_corpus, split="test")
    return {
        "facebook/hubert-base-ls960": str(tmp_path / "hubert-base-ls960"),
        "/data/librispeech/manifest.csv": str(small_corpus),
        "/data/keywords.csv": str(embedded_corpus),
        "speech_commands:/data/SpeechCommands": "speech_commands:" + str(_speech_commands_tree(small_corpus, tmp_path / "sc")),
        "voxceleb:/data/VoxCeleb1": "voxceleb:" + str(_voxceleb_tree(small_corpus, tmp_path / "vox")),
        "/models/all-MiniLM-L6-v2": "builtin:bert-tiny",
        "clip.wav": str(clips[0].path), "other.wav": str(clips[30].path),
        "long.wav": _long_recording(clips[:6], tmp_path / "long.wav"),
        # the offline Whisper build: the script from the checkout, its folder in the test's scratch space
        "benchmarks/whisper_teacher.py": str(ROOT / "benchmarks" / "whisper_teacher.py"),
        "~/.cache/edgedistill/whisper-tiny.en": str(tmp_path / "whisper-tiny.en"),
    }


@pytest.mark.slow  # an end-to-end run: `make test-slow` (and CI)
def test_every_readme_command_runs_as_written(embedded_teacher, substitutes, embedded_corpus, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(ROOT / "configs", work / "configs")
    monkeypatch.chdir(work)
    commands = readme_commands()
    assert {"make demo", "make test"} <= set(commands)
    ran = []
    for line in commands:
        start = time.perf_counter()
        words = [substitutes.get(w, w) for w in line.split()]
        words = [next((v + w[len(k):] for k, v in substitutes.items() if ":" in k and w.startswith(k)), w)
                 for w in words]
        words = [w.split("=")[0] + "=" + substitutes[w.split("=", 1)[1]] if "=" in w and w.split("=", 1)[1] in substitutes
                 else w for w in words]  # me=clip.wav
        if words[0] == "make":  # CI runs `make test`; `make demo` is `edgedistill demo`, run below
            assert words[1] in ("demo", "test") and "edgedistill demo" in commands
            continue
        if words[0] == "edgedistill":
            extra = FAST.get(words[1], [])
            if words[1] == "run" and "configs/arabic_whisper.yaml" in words:
                # its teacher is the folder the README's build command wrote (above)
                extra = extra + [f"teacher={substitutes['~/.cache/edgedistill/whisper-tiny.en']}"]
            if words[1] in ("run", "demo") and {"configs/arabic_speech_commands.yaml", "configs/arabic_whisper.yaml"} & set(words):
                # the recipe's data and noise live in ../shared, not in a test's scratch folder
                # (and its int8 budget search is tested in tests/recipes/test_export.py)
                extra = extra + [f"data={embedded_corpus}", "finetune.noise=null", "export.kws_budget=null",
                                 "export.eer_budget=null"]
            code = main(words[1:] + extra)
            assert code == 0, (line, capsys.readouterr().err[-2000:])
        elif words[0] == "accelerate":
            exe = str(Path(sys.executable).parent / "accelerate")
            res = subprocess.run([exe] + words[1:] + FAST["distill"], capture_output=True, text=True, timeout=300,
                                 env={**os.environ, "OMP_NUM_THREADS": "1"})
            assert res.returncode == 0, (line, res.stderr[-2000:])
            assert "distill: 2 process(es)" in res.stderr, res.stderr[-2000:]
        elif words[0] == "python":
            res = subprocess.run([sys.executable] + words[1:], capture_output=True, text=True, timeout=300)
            assert res.returncode == 0, (line, res.stderr[-2000:])
        else:
            raise AssertionError(f"README command of an unknown kind: {line}")
        ran.append(line)
        print(f"README command took {time.perf_counter() - start:.1f} s: {line}")
    assert ran == [c for c in commands if not c.startswith("make ")] and len(ran) >= 15, ran
