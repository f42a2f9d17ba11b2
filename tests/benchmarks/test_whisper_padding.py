import json

import torch

from tests.benchmarks import load_benchmark


def test_smoke_compares_each_hidden_state_alone_and_padded(tmp_path):
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    from edgedistill.models.whisper import tiny_whisper_config

    torch.manual_seed(0)
    WhisperForConditionalGeneration(tiny_whisper_config()).save_pretrained(tmp_path / "w")
    WhisperFeatureExtractor(feature_size=80).save_pretrained(tmp_path / "w")
    out = tmp_path / "wp"
    res = load_benchmark("whisper_padding").main(["--teacher", str(tmp_path / "w"), "--data", str(tmp_path / "absent"),
                                                  "--rounds", "1", "--out", str(out)])
    assert len(res["clips"]) == 1 and len(res["layers"]) == 5  # the espeak-ng clip alone; 4 layers + input
    first = res["layers"][0]
    assert 0.9 < first["cos_mean"] <= 1.0 + 1e-6  # the convolutions see almost the same frames
    assert res["timing"]["padded_30s_ms"] > res["timing"]["own_1s_ms"] > 0
    assert json.loads(out.with_suffix(".json").read_text())["machine"]["versions"]["torch"]
    assert "padded to 30 s" in out.with_suffix(".md").read_text()
