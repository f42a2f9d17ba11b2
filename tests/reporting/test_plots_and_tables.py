"""What a short run's report says (newcomer item 3): cells a stream cannot measure are n/a with a
sentence saying why, and no plot is drawn empty."""

import json

import numpy as np

from edgedistill.reporting import plots
from edgedistill.reporting.tables import stream_note, stream_table


def _stream(seconds: float) -> dict:
    return {"seconds": seconds, "seed": 0, "snr_db": 20.0, "targets": ["yes"], "occurrences": 5, "hop_ms": 100.0,
            "threads": 1, "frr_at_0.5_fa_per_hour": 0.4, "frr_at_1_fa_per_hour": 0.4, "frr_at_2_fa_per_hour": 0.2,
            "latency_s_median": float("nan"), "latency_s_p90": float("nan"), "mean_ms": 1.0, "p99_ms": 2.0,
            "core_share": 0.01}


def test_a_short_stream_says_which_rates_it_cannot_measure():
    row = stream_table({"student": _stream(60)})[2]
    assert row.count("n/a") == 3 and "nan" not in row and "- (no hit)" in row
    note = stream_note(_stream(60), "test", "embedded")
    assert "too short for 0.5, 1, 2 FA/h" in note and "60 FA/h" in note and "2 h of stream" in note
    two_hours = stream_table({"student": _stream(7200)})[2]
    assert "n/a" not in two_hours and "40.00%" in two_hours
    assert "too short" not in stream_note(_stream(7200), "test", "embedded")


def test_no_plot_is_drawn_empty(tmp_path):
    # a stream where nothing fired: one point per curve, nothing to draw
    assert plots.plot_stream_det({"m": {"fa_per_hour": [0.0], "frr": [1.0], "threshold": [np.inf]}},
                                 tmp_path / "s.png") is None
    assert not (tmp_path / "s.png").exists()
    # training logs: a stage without a loss gets no panel; none at all, no file
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "one.jsonl").write_text(json.dumps({"step": 2, "loss": 1.5}) + "\n")
    assert plots.plot_training({"distill": tmp_path / "empty.jsonl"}, tmp_path / "t.png") is None
    assert not (tmp_path / "t.png").exists()
    assert plots.plot_training({"distill": tmp_path / "one.jsonl", "x": tmp_path / "empty.jsonl"},
                               tmp_path / "t.png").is_file()


def test_the_tradeoff_plot_names_variants_in_a_legend_not_over_the_points(tmp_path, monkeypatch):
    import matplotlib.axes

    notes = []
    monkeypatch.setattr(matplotlib.axes.Axes, "annotate", lambda self, *a, **k: notes.append(a))
    entries = [{"variant": f"v{i}", "file_bytes": 1e6, "latency_ms_p50": 1.0, "kws_accuracy": 0.9, "sv_eer": 0.1}
               for i in range(3)]
    assert plots.plot_tradeoff(entries, tmp_path / "t.png").is_file() and notes == []
