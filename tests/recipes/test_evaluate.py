import json

import pytest

from edgedistill.cli import main
from edgedistill.recipes.evaluate import evaluate


def test_the_exported_onnx_scores_like_the_pytorch_model(trained_multitask, exported, embedded_corpus, tmp_path):
    torch_r = evaluate(str(trained_multitask), str(embedded_corpus), "test", num_trials=2000, progress=False)
    onnx_r = evaluate(str(exported[0]), str(embedded_corpus), "test", num_trials=2000)
    # same clips, same crops, same trials: the fp32 export gives the same numbers
    for key in ("clips", "speakers", "trials"):
        assert onnx_r[key] == torch_r[key]
    assert onnx_r["kws_accuracy"] == pytest.approx(torch_r["kws_accuracy"], abs=1 / torch_r["clips"])
    assert onnx_r["sv_eer"] == pytest.approx(torch_r["sv_eer"], abs=0.01)
    # through the command, to a JSON report
    out = tmp_path / "r.json"
    assert main(["evaluate", "--model", str(exported[0]), "--data", str(embedded_corpus), "--split", "test",
                 "--trials", "2000", "--out", str(out)]) == 0
    saved = json.loads(out.read_text())
    assert saved["model"] == str(exported[0]) and saved["kws_accuracy"] == onnx_r["kws_accuracy"]
    assert len(saved["kws_confusion"]) == len(saved["kws_labels"])
