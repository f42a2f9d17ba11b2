import pytest

from edgedistill.evaluation import latency


def test_side_by_side_times_every_model_in_interleaved_rounds(exported, monkeypatch):
    path, _ = exported
    got = latency.time_onnx_side_by_side({"a": path, "b": path}, seconds=0.5, rounds=4, warmup=1)
    assert list(got) == ["a", "b"] and all(0 < p50 <= p90 for p50, p90 in got.values())

    calls = []

    class Fake:  # records the order of runs: a, b, a, b, ... not a, a, ..., b, b
        def __init__(self, path, threads):
            self.session = self
            self.name = str(path)

        def run(self, outputs, feeds):
            assert feeds["waveform"].shape == (1, 8000)
            calls.append(self.name)

    monkeypatch.setattr("edgedistill.runtime.model.EdgeModel", Fake)
    latency.time_onnx_side_by_side({"a": "x.onnx", "b": "y.onnx"}, seconds=0.5, rounds=3, warmup=1)
    assert calls == ["x.onnx", "y.onnx"] * 4


def test_side_by_side_refuses_nothing_to_time_and_a_missing_file(tmp_path):
    with pytest.raises(ValueError, match="no ONNX model"):
        latency.time_onnx_side_by_side({})
    with pytest.raises(ValueError, match="rounds"):
        latency.time_onnx_side_by_side({"a": tmp_path / "a.onnx"}, rounds=0)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        latency.time_onnx_side_by_side({"a": tmp_path / "missing.onnx"})


def test_timing_a_torch_model_on_one_thread_gives_the_caller_its_threads_back():
    """Defect: time_torch left torch on 1 thread, so training after it in the same process ran
    on one core."""
    import torch

    seen = []
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        p50, p90 = latency.time_torch(lambda x: seen.append(torch.get_num_threads()), seconds=0.1, runs=2, warmup=1)
        assert seen == [1, 1, 1] and 0 <= p50 <= p90 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_hop_timing_steps_a_stream_and_runs_a_window_per_hop_for_the_others(exported, micro_exported):
    got = latency.time_hops_side_by_side({"window": exported[0], "stream": micro_exported[0]}, rounds=20, warmup=2)
    assert got["stream"]["streaming"] and not got["window"]["streaming"]
    for r in got.values():
        assert 0 < r["p50_ms"] <= r["p99_ms"] and r["core_share"] == pytest.approx(r["mean_ms"] / 100)
    with pytest.raises(ValueError, match="no ONNX model"):
        latency.time_hops_side_by_side({})
