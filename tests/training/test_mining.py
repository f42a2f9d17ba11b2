"""Hard-negative mining: the windows where a planted detector fires come back as training windows."""

from types import SimpleNamespace

import numpy as np
import torch

from edgedistill.data.labelled import BalancedSampler
from edgedistill.data.manifest import read_manifest
from edgedistill.data.windows import BACKGROUND, StreamWindows, window_starts
from edgedistill.runtime.streaming import detect_on_logits
from edgedistill.data.streams import keyword_free_stream
from edgedistill.training.mining import HardNegatives, mine_false_alarms, stream_logits


class WindowsOnly:
    """A training dataset with no clips: the windows only (as `ClipsAndWindows` has them)."""

    def __init__(self, windows):
        self.windows = windows

    def __len__(self):
        return len(self.windows)


class Loud(torch.nn.Module):
    """A planted detector: 'yes' wherever the window's last 0.3 s are loud, else background."""

    def __init__(self, labels, level):
        super().__init__()
        self.labels, self.level = labels, level

    def forward(self, wave):
        loud = (wave[:, -4800:].pow(2).mean(dim=1) > self.level).float()
        logits = torch.full((wave.shape[0], len(self.labels)), -10.0)
        logits[:, self.labels.index("yes")] = 10 * loud - 5
        logits[:, self.labels.index(BACKGROUND)] = 5 - 10 * loud
        return {"kws_logits": logits}


def test_mining_adds_the_windows_where_a_planted_detector_fires(small_corpus):
    clips = read_manifest(small_corpus, split="train")
    labels = sorted({c.label for c in clips} | {BACKGROUND})
    audio, words = keyword_free_stream(clips, ["yes"], 40, seed=5)
    assert not any(w.keyword == "yes" for w in words) and words
    level = float(np.mean(audio ** 2))
    model = Loud(labels, level)
    logits = stream_logits(model, audio)
    assert len(logits) == len(window_starts(len(audio), 16_000, 1_600))
    found, same = mine_false_alarms(model, clips, ["yes"], labels, 40, seed=5)
    assert np.array_equal(same, audio)
    # the mined windows are those ending where the detector fired (the stream holds no target word)
    events = detect_on_logits(logits, labels, {"yes": 0.5})
    assert found["fired"] == len(events) == len(found["starts"]) > 0
    assert found["starts"] == [int(round(e.end_s * 16_000)) - 16_000 for e in events]
    # and it fired on loud audio: most of those windows end loud
    assert np.mean([np.mean(audio[s + 11_200:s + 16_000] ** 2) > level for s in found["starts"]]) > 0.7
    assert "yes" not in found["labels"] and set(found["labels"]) <= set(labels)
    # they join the training windows as a class of their own, a quarter of the window draws
    windows = StreamWindows(clips, ["yes"], {lab: i for i, lab in enumerate(labels)}, seconds=20, streams=2)
    n = len(windows)

    loader = SimpleNamespace(dataset=WindowsOnly(windows))
    sampler = BalancedSampler([10**6 + int(k) for k in windows.kind], 8000, source_ids=[2] * n)
    mining = HardNegatives(loader, sampler, clips, ["yes"], labels, steps=100, rounds=1, seconds=40, threshold=0.5,
                           seed=0)
    assert mining.steps == [50] and mining.due(50) and not mining.due(49)
    got = mining.mine(model, 50)
    assert not mining.due(50) and len(windows) == n + len(got["starts"]) > n
    assert set(windows.kind[n:]) == {3}
    drawn = np.array([i for i, _ in sampler])
    assert 0.2 < np.mean(drawn >= n) < 0.3
    # a resumed run puts the same windows back from what the checkpoint saved
    again = StreamWindows(clips, ["yes"], {lab: i for i, lab in enumerate(labels)}, seconds=20, streams=2)
    loader = SimpleNamespace(dataset=WindowsOnly(again))
    resumed = HardNegatives(loader, BalancedSampler([10**6 + int(k) for k in again.kind], 8000, source_ids=[2] * n),
                            clips, ["yes"], labels, 100, 1, 40, 0.5, seed=0)
    resumed.restore(mining.state())
    assert again.rows == windows.rows and not resumed.due(50)
    assert all(np.array_equal(again[i][0], windows[i][0]) for i in range(n, len(windows)))
