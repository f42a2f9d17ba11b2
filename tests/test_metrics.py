import numpy as np
import pytest

from edgedistill.metrics import confusion, eer, frr_at_far, kws_report, min_dcf, roc, sv_report


def _rates(s, y, th):
    """Brute force: accept when score >= th."""
    return float(np.mean(s[~y] >= th)), float(np.mean(s[y] < th))


def _brute_min_dcf(s, y, p):
    best = np.inf
    for th in np.r_[np.unique(s), np.inf]:
        far, frr = _rates(s, y, th)
        best = min(best, frr * p + far * (1 - p))
    return best / min(p, 1 - p)


def _brute_eer_bounds(s, y):
    """The EER lies between the FAR/FRR of the two thresholds around the crossing; the
    min over thresholds of max(FAR, FRR) is an upper bound."""
    best = np.inf
    for th in np.r_[np.unique(s), np.inf]:
        best = min(best, max(_rates(s, y, th)))
    return best


@pytest.mark.parametrize("seed", range(5))
def test_random_scores_agree_with_a_threshold_sweep(seed):
    rng = np.random.default_rng(seed)
    y = rng.random(300) < 0.3
    s = rng.normal(size=300) + 1.2 * y
    s[:20] = np.round(s[:20], 1)  # some ties
    for p in (0.01, 0.05, 0.5):
        assert min_dcf(s, y, p)[0] == pytest.approx(_brute_min_dcf(s, y, p), abs=1e-12)
    e, th = eer(s, y)
    upper = _brute_eer_bounds(s, y)
    step = 1 / min(y.sum(), (~y).sum())
    assert upper - step <= e <= upper + 1e-12
    far, frr = _rates(s, y, th)    # at the interpolated threshold both rates are near the EER
    assert abs(far - e) <= step + 1e-9 and abs(frr - e) <= step + 1e-9


def test_large_sample_eer_matches_theory():
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(20000, bool), np.zeros(20000, bool)]
    s = np.r_[rng.normal(1, 1, 20000), rng.normal(-1, 1, 20000)]
    # two unit Gaussians 2 apart: EER = Phi(-1) = 0.1587
    assert eer(s, y)[0] == pytest.approx(0.1587, abs=0.006)


def test_degenerate_scores():
    y = np.array([1, 0, 1, 0, 0], bool)
    assert eer(np.ones(5), y)[0] == 0.5
    assert min_dcf(np.ones(5), y, 0.01)[0] == pytest.approx(1.0)  # accept nothing: DCF = P_tar
    sep = np.where(y, 2.0, -2.0)
    assert eer(sep, y)[0] == 0.0 and min_dcf(sep, y)[0] == 0.0
    assert eer(-sep, y)[0] == 1.0
    with pytest.raises(ValueError, match="both target"):
        eer(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="NaN"):
        eer(np.array([np.nan, 1.0]), np.array([1, 0]))


def test_roc_end_points_and_frr_at_far():
    far, frr, thr = roc([0.9, 0.8, 0.3, 0.1], [1, 0, 1, 0])
    assert (far[0], frr[0], far[-1], frr[-1]) == (0, 1, 1, 0) and thr[0] == np.inf
    assert frr_at_far([0.9, 0.8, 0.3, 0.1], [1, 0, 1, 0], 0.0) == 0.5


def test_kws_and_sv_reports():
    probs = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    r = kws_report(probs, [0, 1, 1], ["a", "b"])
    assert r["accuracy"] == pytest.approx(2 / 3) and r["confusion"] == [[1, 0], [1, 1]]
    assert confusion([0, 0], [1, 1], 2).tolist() == [[0, 0], [2, 0]]
    rep = sv_report([0.9, 0.1, 0.8, 0.2], [1, 0, 1, 0])
    assert rep["eer"] == 0 and rep["trials"] == 4 and rep["target_trials"] == 2


def test_stream_matching_and_rates_against_a_hand_computed_example():
    from edgedistill.metrics import match_events, stream_report

    truth = [("yes", 10.0, 10.5), ("stop", 20.0, 20.6), ("yes", 30.0, 30.4)]
    events = [("yes", 9.8, 10.8, 0.95),    # hit of occurrence 0, latency 0.3 s
              ("yes", 10.9, 11.9, 0.60),   # second event on the same word: false alarm
              ("no", 19.9, 20.9, 0.90),    # another keyword over "stop": false alarm
              ("yes", 45.0, 46.0, 0.70),   # noise: false alarm
              ("yes", 30.2, 31.2, 0.85)]   # hit of occurrence 2, latency 0.8 s
    m = match_events(events, truth, tolerance_s=0.5)
    assert m["hits"] == [(0, 0), (4, 2)] and sorted(m["false_alarms"]) == [1, 2, 3] and m["misses"] == [1]
    r = stream_report(events, truth, duration_s=3600.0)         # one hour
    assert r["frr"] == pytest.approx(1 / 3) and r["fa_per_hour"] == 3.0
    assert r["latency_s_median"] == pytest.approx(0.55) and r["hits"] == 2
    # at 1 FA/h: threshold 0.85 keeps the hits at 0.95 and 0.85 and the 0.90 false alarm
    assert r["frr_at_1_fa_per_hour"] == pytest.approx(1 / 3)
    # at 0.5 FA/h: only thresholds above 0.90 (one hit at 0.95) or nothing: FRR 2/3
    assert r["frr_at_0.5_fa_per_hour"] == pytest.approx(2 / 3)
    assert r["frr_at_2_fa_per_hour"] == pytest.approx(1 / 3)


def test_speaker_gate_report_by_hand():
    from edgedistill.metrics import speaker_gate_report

    hits = [("a", {"a": 0.9, "b": 0.2, "c": 0.6}),   # owner accepted; c would accept it too
            ("b", {"a": 0.1, "b": 0.4, "c": 0.3}),   # owner rejected
            ("x", {"a": 0.7, "b": 0.0, "c": 0.0})]   # not enrolled: three impostor pairs
    r = speaker_gate_report(hits, threshold=0.5, occurrences=4)
    assert r["owner_hits"] == 2 and r["owner_acceptance"] == 0.5
    # pairs: (a->b 0.2, a->c 0.6), (b->a 0.1, b->c 0.3), (x->a 0.7, x->b 0, x->c 0): 2 of 7 accepted
    assert r["impostor_pairs"] == 7 and abs(r["impostor_acceptance"] - 2 / 7) < 1e-12
    assert r["owner_frr_end_to_end"] == 1 - 1 / 4


def test_stream_report_gives_the_threshold_of_each_operating_point():
    from edgedistill.metrics import stream_report

    truth = [("yes", 10.0, 10.5), ("yes", 20.0, 20.5)]
    events = [("yes", 9.6, 10.6, 0.9), ("yes", 19.6, 20.6, 0.4), ("yes", 30.0, 31.0, 0.6)]  # one false alarm
    r = stream_report(events, truth, duration_s=3600.0)
    # keeping the false alarm (FA/h 1) catches both; at 0.5 FA/h the threshold rises above it
    assert r["frr_at_1_fa_per_hour"] == 0.0 and r["threshold_at_1_fa_per_hour"] == 0.4
    assert r["frr_at_0.5_fa_per_hour"] == 0.5 and r["threshold_at_0.5_fa_per_hour"] == 0.9


def test_calibrated_thresholds_reach_the_target_false_alarm_rate_computed_by_hand():
    from edgedistill.metrics import calibrate_thresholds

    # 10 h without a keyword; 0.5 FA/h shared by 2 keywords: 0.25 FA/h each, 2.5 in 10 h -> 2 allowed
    fa = [("a", 0.9), ("a", 0.8), ("a", 0.7), ("a", 0.3), ("b", 0.2)]
    thr = calibrate_thresholds(fa, hours=10.0, keywords=["a", "b"], target_fa_per_hour=0.5)
    assert 0.7 < thr["a"] < 0.7 + 1e-9 and thr["b"] == 0.05  # b's single false alarm is under its budget
    above = [(k, s) for k, s in fa if s >= thr[k]]
    assert above == [("a", 0.9), ("a", 0.8), ("b", 0.2)] and len(above) / 10.0 <= 0.5
    # one hour cannot afford a false alarm: the threshold clears the highest one
    assert calibrate_thresholds(fa, hours=1.0, keywords=["a"], target_fa_per_hour=0.5)["a"] > 0.9
    with pytest.raises(ValueError):
        calibrate_thresholds(fa, hours=0.0, keywords=["a"])


def test_intervals_match_published_values():
    from edgedistill.metrics import binomial_interval, poisson_interval

    # Garwood intervals (e.g. Ulm 1990 tables): 0 -> (0, 3.689), 1 -> (0.0253, 5.572), 10 -> (4.795, 18.39)
    for k, (lo, hi) in {0: (0.0, 3.689), 1: (0.0253, 5.572), 10: (4.795, 18.390)}.items():
        got = poisson_interval(k)
        assert abs(got[0] - lo) < 1e-3 and abs(got[1] - hi) < 1e-3, (k, got)
    # Clopper-Pearson: 0/10 -> (0, 0.3085), 5/10 -> (0.1871, 0.8129), 10/10 -> (0.6915, 1)
    for (k, n), (lo, hi) in {(0, 10): (0.0, 0.3085), (5, 10): (0.1871, 0.8129), (10, 10): (0.6915, 1.0)}.items():
        got = binomial_interval(k, n)
        assert abs(got[0] - lo) < 1e-3 and abs(got[1] - hi) < 1e-3, (k, n, got)


def test_detection_report_counts_false_alarms_on_the_negative_stream_by_hand():
    from edgedistill.metrics import detection_report

    truth = [("go", 1.0, 1.5), ("go", 10.0, 10.5), ("go", 20.0, 20.5), ("go", 30.0, 30.5)]
    events = [("go", 0.8, 1.8, 0.9), ("go", 9.8, 10.8, 0.6), ("go", 19.9, 20.9, 0.3),  # hits at 0.9 / 0.6 / 0.3
              ("go", 40.0, 41.0, 0.95)]                                                 # a false alarm here
    negatives = [("go", s) for s in (0.99, 0.7, 0.5, 0.4, 0.2)]
    r = detection_report(events, truth, negatives, negative_hours=2.0, floor=0.1)
    # 0.5 FA/h over 2 h allows 1 false alarm: threshold just above 0.7 -> hits 0.9 only: 3 misses of 4
    half = r["at_0.5_fa_per_hour"]
    assert half["false_alarms"] == 1 and half["misses"] == 3 and 0.7 < half["threshold"] < 0.7001
    assert half["keyword_stream_false_alarms"] == 1  # the 0.95 event, counted apart
    # 1 FA/h allows 2: just above 0.5 -> hits 0.9 and 0.6: 2 misses
    one = r["at_1_fa_per_hour"]
    assert one["false_alarms"] == 2 and one["misses"] == 2 and one["fa_per_hour"] == 1.0
    lo, hi = one["frr_ci95"]
    assert lo < 0.5 < hi and one["fa_per_hour_ci95"][0] < 1.0 < one["fa_per_hour_ci95"][1]
    # 2 FA/h allows 4: just above 0.2 -> hits 0.9, 0.6, 0.3: 1 miss
    assert r["at_2_fa_per_hour"]["misses"] == 1 and r["at_2_fa_per_hour"]["false_alarms"] == 4
    # fewer false alarms than allowed: the detector's own floor is the threshold
    assert detection_report(events, truth, negatives, 20.0, floor=0.1)["at_0.5_fa_per_hour"]["threshold"] == 0.1
    assert r["curve"]["frr"][-1] == 1.0 and r["curve"]["fa_per_hour"][-1] == 0.0


def test_detection_report_also_measures_the_deployed_per_keyword_thresholds_by_hand():
    """One threshold for all keywords lets the noisiest keyword set it; a deployed detector has
    one per keyword (`calibrate_thresholds`, the rate shared equally), measured beside it."""
    from edgedistill.metrics import calibrate_thresholds, detection_report

    truth = [("go", 1.0, 1.5), ("go", 10.0, 10.5), ("up", 20.0, 20.5), ("up", 30.0, 30.5)]
    events = [("go", 0.8, 1.8, 0.6), ("go", 9.8, 10.8, 0.5), ("up", 19.9, 20.9, 0.95), ("up", 29.9, 30.9, 0.9)]
    negatives = [("up", 0.99), ("up", 0.97), ("up", 0.96), ("go", 0.4), ("go", 0.3)]
    r = detection_report(events, truth, negatives, negative_hours=2.0, floor=0.1)
    # one threshold at 1 FA/h (2 allowed): just above 0.96 -> no hit at all
    assert r["at_1_fa_per_hour"]["misses"] == 4
    # per keyword, 0.5 FA/h each = 1 allowed each: up just above 0.97 (no hit), go just above 0.3 (both hit)
    per = r["at_1_fa_per_hour_per_keyword"]
    assert per["thresholds"] == calibrate_thresholds(negatives, 2.0, ["go", "up"], 1.0, 0.1)
    assert 0.3 < per["thresholds"]["go"] < 0.3001 and 0.97 < per["thresholds"]["up"] < 0.9701
    assert per["misses"] == 2 and per["false_alarms"] == 2 and per["fa_per_hour"] == 1.0
    assert per["frr_ci95"][0] < 0.5 < per["frr_ci95"][1]
    assert "at_1_fa_per_hour_per_keyword" not in detection_report(events, truth, [0.99, 0.5], 2.0)
