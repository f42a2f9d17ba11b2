import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location("bench", ROOT / "benchmarks" / "distill_throughput.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_one_iteration_smoke(tmp_path):
    out = tmp_path / "tp"
    res = _load().main(["--teacher", "builtin:hubert-tiny", "--steps", "1", "--warmup", "1",
                        "--batch-size", "2", "--seconds", "1", "--out", str(out)])
    assert [r["reuse_teacher_cnn"] for r in res["results"]] == [False, True]
    assert all(r["audio_s_per_s"] > 0 and r["audio_s_per_step"] == 2.0 for r in res["results"])
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["machine"]["versions"]["torch"] and "| student CNN |" in out.with_suffix(".md").read_text()
