"""`edgedistill calibrate`: thresholds at a target false-alarm rate, into the file."""

import shutil

from edgedistill.cli import main
from edgedistill.runtime.model import EdgeModel
from edgedistill.runtime.streaming import Detector


def test_calibrate_writes_thresholds_that_keep_the_stream_under_the_target(exported, embedded_corpus, tmp_path, capsys):
    from edgedistill.data.layouts import resolve_labelled
    from edgedistill.evaluation.scores import false_alarms

    path = tmp_path / "model.onnx"
    shutil.copy(exported[0], path)
    assert main(["calibrate", "--model", str(path), "--data", str(embedded_corpus), "--split", "val",
                 "--keywords", "yes,stop", "--hours", "0.05", "--target-fa-per-hour", "20"]) == 0
    assert "thresholds at 20 false alarms per hour" in capsys.readouterr().out
    model = EdgeModel(path)
    thr = model.keyword_thresholds
    assert set(thr) == {"yes", "stop"} and all(0.05 <= t <= 1 for t in thr.values())
    assert model.metadata["keyword_thresholds_at"]["target_fa_per_hour"] == 20
    assert {k for _, k, _ in Detector(model).targets} == {"yes", "stop"}
    # on the same stream, the events at or above the thresholds stay within the budget: 20 FA/h
    # shared by 2 keywords over 0.05 h allows floor(0.5) = 0 of each
    fa, hours, _ = false_alarms(path, resolve_labelled(str(embedded_corpus), "val"), ["yes", "stop"], 0.05 * 3600)
    assert sum(s >= thr[k] for k, s in fa) / hours <= 20
    # a typo: one line, nothing written
    assert main(["calibrate", "--model", str(path), "--data", str(embedded_corpus), "--keywords", "yess"]) == 2
    assert "did you mean 'yes'?" in capsys.readouterr().err
