"""The sensitivity search's measurements: kept, shared by runs and by processes side by side."""

import json
import subprocess
import sys
import threading
import time

import pytest

import edgedistill.deploy.search_memo as sm
from edgedistill.deploy.search_memo import SearchMemo


@pytest.fixture
def other():
    """Another live process on this host, as the owner of its claims; killed at the end."""
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield p, {"host": sm.this_process()["host"], "pid": p.pid, "started": sm._started(p.pid)}
    p.kill()
    p.wait()


def test_a_node_set_a_live_process_measures_is_not_measured_twice_and_an_ended_ones_is_taken_over(tmp_path, other):
    proc, owner = other
    theirs, ours = SearchMemo("k", shared=tmp_path, owner=owner), SearchMemo("k", shared=tmp_path)
    assert theirs.claim(["a"])
    assert ours.busy(["a"]) and not ours.claim(["a"]) and not ours.busy(["b"]) and ours.claim(["b"])
    assert not theirs.claim(["b"])  # ours now
    proc.kill()
    proc.wait()
    assert not ours.busy(["a"]) and ours.claim(["a"])  # its process ended: the claim is abandoned


def test_a_process_waits_for_the_measurement_another_is_making(tmp_path, other, monkeypatch):
    monkeypatch.setattr(sm, "POLL_S", 0.05)
    theirs, ours = SearchMemo("k", shared=tmp_path, owner=other[1]), SearchMemo("k", shared=tmp_path)
    assert theirs.claim(["a"])
    threading.Timer(0.3, lambda: theirs.put(["a"], {"cost": 0.25})).start()
    called = []
    t = time.perf_counter()
    assert ours.measure(["a"], lambda s: called.append(1) or {"cost": 9.0}) == {"cost": 0.25}
    assert not called and time.perf_counter() - t >= 0.25
    assert ours.measure(["b"], lambda s: {"cost": 0.5}) == {"cost": 0.5}  # nobody holds b: measured here
    kept = json.loads((tmp_path / "k.json").read_text())
    assert kept["measured"] == {"a": {"cost": 0.25}, "b": {"cost": 0.5}} and kept["claims"] == {}


def test_a_failed_measurement_gives_its_claim_back(tmp_path, other):
    ours, theirs = SearchMemo("k", shared=tmp_path), SearchMemo("k", shared=tmp_path, owner=other[1])

    def fails(nodes):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ours.measure(["a"], fails)
    assert theirs.claim(["a"])  # not held by a process that is still running but no longer measuring it


def test_a_private_memo_joins_the_shared_one_which_outlives_the_search(tmp_path, caplog):
    private, shared = tmp_path / "run" / "model.int8.search.json", tmp_path / "cache"
    private.parent.mkdir()
    private.write_text(json.dumps({"key": "k", "measured": {"": {"cost": 0.1}}}))  # a run stopped before it shared
    m = SearchMemo("k", private, shared)
    assert m.get([]) == {"cost": 0.1}
    m.put(["a"], {"cost": 0.2})
    m.done()
    assert not private.exists() and json.loads((shared / "k.json").read_text())["measured"] == {
        "": {"cost": 0.1}, "a": {"cost": 0.2}}
    assert SearchMemo("other key", shared=shared).get([]) is None  # another search: its own file
    (shared / "k.json").write_text("{not json")
    with caplog.at_level("WARNING"):
        assert SearchMemo("k", shared=shared).get(["a"]) is None  # unreadable: measured again, said
    assert "not readable JSON" in caplog.text


def test_a_cache_folder_that_cannot_be_written_is_left_and_the_search_keeps_its_own_file(tmp_path, caplog):
    (tmp_path / "a file").write_text("")
    private = tmp_path / "model.int8.search.json"
    with caplog.at_level("WARNING"):
        m = SearchMemo("k", private, tmp_path / "a file" / "search")  # mkdir fails, even as root
    assert "cannot be written" in caplog.text and "EDGEDISTILL_CACHE" in caplog.text and not m.shared
    assert m.measure(["a"], lambda s: {"cost": 0.2}) == {"cost": 0.2}
    assert json.loads(private.read_text())["measured"] == {"a": {"cost": 0.2}}  # resumable still

    shared = tmp_path / "cache"
    m = SearchMemo("k", shared=shared)  # no private file: what it measures stays in memory
    m.put(["a"], {"cost": 0.1})
    (shared / "k.json").unlink()
    (shared / "k.json.lock").unlink()
    shared.rmdir()
    shared.write_text("")  # the folder goes away mid-search
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert m.measure(["b"], lambda s: {"cost": 0.3}) == {"cost": 0.3}
    assert "cannot be written" in caplog.text and not m.shared
    assert m.get(["a"]) == {"cost": 0.1} and m.get(["b"]) == {"cost": 0.3}


def test_while_it_waits_a_process_measures_the_sets_the_search_needs_next(tmp_path, other, monkeypatch):
    monkeypatch.setattr(sm, "POLL_S", 0.05)
    theirs, ours = SearchMemo("k", shared=tmp_path, owner=other[1]), SearchMemo("k", shared=tmp_path)
    assert theirs.claim(["a"]) and theirs.claim(["d"])
    ours.put(["b"], {"cost": 0.5})

    def measure_a_later():  # the other process ends its measurement of a after this one's of c
        while theirs.get(["c"]) is None:
            time.sleep(0.02)
        theirs.put(["a"], {"cost": 0.25})

    threading.Thread(target=measure_a_later, daemon=True).start()
    calls = []
    change = ours.measure(["a"], lambda s: calls.append(s) or {"cost": 0.125}, ahead=[["b"], ["d"], ["c"]])
    assert change == {"cost": 0.25} and calls == [["c"]]  # b: measured, d: held by the other
    assert json.loads((tmp_path / "k.json").read_text())["measured"]["c"] == {"cost": 0.125}
