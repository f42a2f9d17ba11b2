"""Every command line quoted in the README and the docs runs, as written, in reading order
(the README, then the docs pages in the order of mkdocs.yml's nav); a command quoted twice runs
once. Their Python blocks run too, after the commands, in the folder the commands worked in.

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


def pages() -> list[Path]:
    """The README, then every docs page in the order of mkdocs.yml's nav."""
    import yaml

    def walk(node):
        if isinstance(node, str):
            yield node
        elif isinstance(node, dict):
            for v in node.values():
                yield from walk(v)
        elif isinstance(node, list):
            for v in node:
                yield from walk(v)

    class _Loader(yaml.SafeLoader):
        pass

    _Loader.add_multi_constructor("", lambda loader, tag, node: None)  # mkdocs' !!python tags, if any
    nav = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=_Loader)["nav"]
    docs = [ROOT / "docs" / p for p in walk(nav) if (ROOT / "docs" / p).is_file()]
    return [ROOT / "README.md", *docs]


def readme_commands() -> list[str]:
    """The lines of the bash blocks of the README and the docs (continuations joined, comments
    dropped), each once, in reading order."""
    commands = []
    for page in pages():
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                words = shlex.split(line, comments=True)
                if words and " ".join(words) not in commands:
                    commands.append(" ".join(words))
    return commands


def python_blocks() -> list[str]:
    """The Python blocks of the README and the docs, each once, in reading order."""
    blocks = []
    for page in pages():
        blocks += [b for b in re.findall(r"```python\n(.*?)```", page.read_text(), re.S) if b not in blocks]
    return blocks


def test_every_docs_page_is_in_the_nav_and_the_readme_links_resolve():
    listed = {p.name for p in pages()[1:]}
    assert listed == {p.name for p in (ROOT / "docs").glob("*.md")}, "add each docs page to mkdocs.yml's nav"
    for target in re.findall(r"\]\(([^)#]+)\)", (ROOT / "README.md").read_text()):
        assert (ROOT / target).exists(), target
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


def test_prose_names_no_command_that_the_blocks_do_not_run():
    text = "\n".join(p.read_text() for p in pages())
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
    for block in python_blocks():  # the device snippets, on the files the commands made
        for name in ("clip.wav", "other.wav", "long.wav"):
            block = block.replace(f'"{name}"', repr(substitutes[name]))
        res = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, timeout=300, cwd=work)
        assert res.returncode == 0, (block, res.stderr[-2000:])
