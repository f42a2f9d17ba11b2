import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edgedistill.audio import AudioError
from edgedistill.runtime.model import EdgeModel

ROOT = Path(__file__).resolve().parents[1]
NO_TORCH = "import sys; sys.modules['torch'] = None; sys.modules['transformers'] = None; sys.modules['scipy'] = None\n"


def _clip(corpus, split="val", k=0):
    from edgedistill.data.manifest import read_manifest

    return read_manifest(corpus, split=split)[k]


def test_runtime_runs_without_torch(exported, embedded_corpus):
    path, _ = exported
    clip = _clip(embedded_corpus)
    code = NO_TORCH + (f"from edgedistill.runtime.model import EdgeModel\nm = EdgeModel({str(path)!r})\n"
                       f"print(m.keyword({str(clip.path)!r})[0]); print('torch' in sys.modules and sys.modules['torch'] is not None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    label, torch_loaded = out.stdout.split()
    assert label in EdgeModel(path).labels and torch_loaded == "False"


def test_keyword_verify_enroll_identify(exported, embedded_corpus):
    path, _ = exported
    m = EdgeModel(path, threads=1)
    a, b = _clip(embedded_corpus, k=0), _clip(embedded_corpus, k=40)
    label, probs = m.keyword(a.path)
    assert label in m.labels and abs(sum(probs.values()) - 1) < 1e-5
    same = m.verify(a.path, a.path)
    assert same["score"] == pytest.approx(1.0, abs=1e-5) and same["same_speaker"]
    assert m.threshold == same["threshold"]
    m.enroll("x", [a.path])
    m.enroll("y", [b.path])
    assert m.identify(a.path)[0] == "x"
    batch = np.zeros((3, 16000), np.float32)
    assert m.embed(batch).shape == (3, 192)


def test_bad_models_get_clear_errors(exported, tmp_path):
    path, _ = exported
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="not a loadable ONNX model"):
        EdgeModel(cut)
    junk = tmp_path / "junk.onnx"
    junk.write_text("hello")
    with pytest.raises(ValueError, match="not a loadable ONNX model"):
        EdgeModel(junk)
    with pytest.raises(FileNotFoundError):
        EdgeModel(tmp_path / "none.onnx")


def test_bad_audio_gets_clear_errors(exported, tmp_path):
    m = EdgeModel(exported[0])
    with pytest.raises(AudioError, match="expected \\[samples\\] or \\[batch, samples\\]"):
        m.keyword(np.zeros((1, 2, 16000), np.float32))
    with pytest.raises(AudioError, match="int16.*astype"):
        m.keyword(np.zeros(16000, np.int16))
    with pytest.raises(AudioError, match="8000 Hz.*16000 Hz"):
        m.keyword(np.zeros(8000, np.float32), sample_rate=8000)
    sf.write(tmp_path / "8k.wav", np.zeros(8000, np.float32), 8000)
    with pytest.raises(AudioError, match="8000 Hz.*16000 Hz"):
        m.keyword(tmp_path / "8k.wav")
    with pytest.raises(AudioError, match="399 samples.*at least 400"):
        m.keyword(np.zeros(399, np.float32))
    x = np.zeros(16000, np.float32)
    x[5] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        m.keyword(x)


def test_device_kit_infer_script_runs_without_torch(exported, embedded_corpus, tmp_path):
    from edgedistill.deploy.kit import write_device_kit

    path, _ = exported
    kit = tmp_path / "kit"
    kit.mkdir()
    (kit / "model.onnx").write_bytes(path.read_bytes())
    write_device_kit(kit)
    shipped = sorted(str(p.relative_to(kit / "edgedistill")) for p in (kit / "edgedistill").rglob("*.py"))
    assert shipped == ["__init__.py", "audio.py", "runtime/__init__.py", "runtime/frontend.py", "runtime/metadata.py",
                       "runtime/model.py", "runtime/streaming.py"]
    a, b = _clip(embedded_corpus, k=0), _clip(embedded_corpus, k=1)
    runner = NO_TORCH + "import runpy; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
    out = subprocess.run([sys.executable, "-c", runner, str(kit / "infer.py"), str(kit / "model.onnx"),
                          str(a.path), str(b.path), "--json"], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert len(res["clips"]) == 2 and "same_speaker" in res["verification"]


def test_long_stereo_and_folder_inputs_are_diagnosed(exported, tmp_path):
    """Defects: a 10-minute array went into onnxruntime (about 45 GB of attention); a stereo
    array in soundfile's [samples, channels] layout was called '2 samples'; a folder passed as the
    model was 'does not exist'."""
    m = EdgeModel(exported[0])
    with pytest.raises(AudioError, match="600.0 s long; one call takes at most 30 s.*streaming"):
        m.keyword(np.zeros(16000 * 600, np.float32))
    sf.write(tmp_path / "long.wav", np.zeros(16000 * 31, np.float32), 16000)
    with pytest.raises(AudioError, match="31.0 s long"):
        m.embed(tmp_path / "long.wav")
    assert EdgeModel(exported[0], max_seconds=40).keyword(tmp_path / "long.wav")[0] in m.labels
    with pytest.raises(AudioError, match=r"16000 samples of 2 channels .*mono.*x.mean\(axis=1\)"):
        m.keyword(np.zeros((16000, 2), np.float32))
    folder = tmp_path / "deploy"
    folder.mkdir()
    (folder / "model.int8.onnx").write_bytes(exported[0].read_bytes())
    with pytest.raises(FileNotFoundError, match="is a folder, not a model file.*model.int8.onnx"):
        EdgeModel(folder)


def test_a_model_without_its_metadata_is_refused_clearly(exported, tmp_path):
    """Defect: a model left without metadata (a kill mid-export) failed later with IndexError."""
    import onnx

    proto = onnx.load(str(exported[0]))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "bare.onnx"))
    with pytest.raises(ValueError, match="carries no edgedistill metadata.*export it again"):
        EdgeModel(tmp_path / "bare.onnx")


def test_infer_script_prints_one_line_for_bad_input(exported, tmp_path):
    from edgedistill.deploy.kit import write_device_kit

    kit = tmp_path / "kit"
    write_device_kit(kit)
    sf.write(tmp_path / "short.wav", np.zeros(100, np.float32), 16_000)  # shorter than one frame of the CNN
    for args in ([str(exported[0]), str(tmp_path / "short.wav")], [str(exported[0]), str(tmp_path / "none.wav")],
                 [str(tmp_path), str(tmp_path / "short.wav")]):
        out = subprocess.run([sys.executable, str(kit / "infer.py"), *args], capture_output=True, text=True)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith("infer.py: error:")


def test_sessions_leave_the_slow_skip_layernorm_fusion_off_unless_asked(tmp_path):
    """onnxruntime fuses a residual Add + LayerNormalization into SkipLayerNormalization, whose
    CPU kernel is several times slower (benchmarks/ort_fusions.py): the runtime leaves it off by
    default, and the fused and unfused graphs compute the same."""
    import onnx

    from edgedistill.runtime.model import SLOW_FUSIONS, open_session
    from tests.benchmarks import load_benchmark

    model = load_benchmark("ort_fusions").add_layernorm_graph(49, 256)
    feed = {n: np.random.default_rng(k).standard_normal((1, 49, 256)).astype(np.float32) for k, n in enumerate(("x", "skip"))}
    ops, outs = {}, {}
    for name, disabled in (("default", SLOW_FUSIONS), ("every rewrite", ())):
        graph = tmp_path / f"{name}.onnx"
        session = open_session(model, 1, disabled_fusions=disabled, optimized_path=graph)
        outs[name] = session.run(None, feed)[0]
        ops[name] = {n.op_type for n in onnx.load(graph).graph.node}
    assert "SkipLayerNormalization" in ops["every rewrite"]  # the fusion exists in this onnxruntime
    assert "SkipLayerNormalization" not in ops["default"] and "LayerNormalization" in ops["default"]
    np.testing.assert_allclose(outs["default"], outs["every rewrite"], atol=1e-5)


def test_an_edge_model_opens_with_the_fusions_it_is_given(exported, monkeypatch):
    path, _ = exported
    seen = []
    import edgedistill.runtime.model as model

    real = model.open_session
    monkeypatch.setattr(model, "open_session", lambda *a: seen.append(a[3]) or real(*a))
    EdgeModel(path)
    EdgeModel(path, disabled_fusions=())
    assert seen == [model.SLOW_FUSIONS, ()]
