import json

import pytest

from tests.benchmarks import load_benchmark


def test_a_windowed_and_a_streaming_file_timed_side_by_side(exported, micro_exported, tmp_path):
    mod = load_benchmark("hop_latency")
    out = tmp_path / "hops"
    res = mod.main(["--models", f"window={exported[0]}", f"micro={micro_exported[0]}", "--rounds", "20",
                    "--out", str(out)])
    assert [r["model"] for r in res["rows"]] == ["window", "micro"]
    assert [r["streaming"] for r in res["rows"]] == [False, True]
    assert json.loads(out.with_suffix(".json").read_text())["threads"] == 1
    assert "| micro | one hop from its state |" in out.with_suffix(".md").read_text()
    with pytest.raises(SystemExit, match="NAME=PATH"):
        mod.main(["--models", str(exported[0]), "--out", str(out)])
