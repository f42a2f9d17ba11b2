"""Detection windows: labelled as the device's detector should answer them."""

import numpy as np

from edgedistill.data.streams import build_stream
from edgedistill.data.windows import (BACKGROUND, Word, add_false_alarms, label_windows, window_label, window_starts,
                                      words_of)

W, HOP, TAIL = 16_000, 1_600, 1_600 + 4_000


def test_a_window_holding_a_whole_target_word_at_a_device_hop_position_is_that_keyword():
    yes = Word("yes", 20_000, 28_000)
    assert window_label(12_800, W, [yes], {"yes"}, TAIL) == "yes"  # ends 800 samples before the window's end
    # part of the word only: its start is cut off, or it has not ended yet
    assert window_label(22_400, W, [yes], {"yes"}, TAIL) == BACKGROUND
    assert window_label(11_200, W, [yes], {"yes"}, TAIL) == BACKGROUND  # ends early, not at a device position
    assert window_label(4_800, W, [yes], {"yes"}, TAIL) == BACKGROUND
    # another word, whole, is not a keyword; two words: the target's label where it is whole at the end
    other = Word("no", 13_000, 19_000)
    assert window_label(12_800, W, [other], {"yes"}, TAIL) == BACKGROUND
    assert window_label(12_800, W, [other, yes], {"yes"}, TAIL) == "yes"
    assert window_label(0, W, [], {"yes"}, TAIL) == BACKGROUND  # noise alone
    # a word the model knows keeps its own label where it is whole at a device position (as its
    # clip does); cut, or unknown to the model, it is background; a whole target wins
    no = Word("no", 20_000, 27_000)
    assert window_label(12_800, W, [no], {"yes"}, TAIL, others={"no"}) == "no"
    assert window_label(12_800, W, [other], {"yes"}, TAIL, others={"no"}) == BACKGROUND  # ends early
    assert window_label(21_000, W, [no], {"yes"}, TAIL, others={"no"}) == BACKGROUND  # its onset cut
    assert window_label(12_800, W, [no], {"yes"}, TAIL, others={"up"}) == BACKGROUND
    assert window_label(12_800, W, [Word("no", 22_000, 28_500), yes], {"yes"}, TAIL, others={"no"}) == "yes"
    # a word as long as the window: held whole only with some slack at its onset
    long = Word("yes", 20_000, 36_000)
    assert window_label(20_800, W, [long], {"yes"}, TAIL) == BACKGROUND
    assert window_label(20_800, W, [long], {"yes"}, TAIL, slack=3_200) == "yes"
    assert window_label(24_000, W, [long], {"yes"}, TAIL, slack=3_200) == BACKGROUND  # 4,000 samples cut


def test_every_hop_of_a_stream_gets_a_label_and_the_positives_are_the_hops_that_see_the_word_whole():
    words = [Word("yes", 20_000, 28_000), Word("no", 40_000, 47_000)]
    starts, labels = label_windows(64_000, words, ["yes"], W, HOP, TAIL, slack=0)
    assert list(starts) == list(window_starts(64_000, W, HOP)) and starts[-1] == 64_000 - W
    positive = [int(s) for s, lab in zip(starts, labels) if lab == "yes"]
    assert positive and all(s <= 20_000 and s + W >= 28_000 and s + W - TAIL <= 28_000 for s in positive)
    # the hops whose window holds 20,000..28,000 with 28,000 in its last TAIL samples: starts 12,000..17,600
    assert positive == [12_800, 14_400, 16_000, 17_600]
    assert set(labels) == {"yes", BACKGROUND}


def test_noise_alone_is_the_data_s_silence_class_where_it_has_one_and_part_of_a_word_stays_background():
    """A `_silence_` clip (a crop of the background recordings) and a window of noise alone are the
    same sound: where the model has that class, the window gets it, not `_background_`."""
    yes = Word("yes", 20_000, 28_000)
    assert window_label(30_000, W, [yes], {"yes"}, TAIL, silence="_silence_") == "_silence_"
    assert window_label(8_000, W, [yes], {"yes"}, TAIL, silence="_silence_") == BACKGROUND == window_label(
        8_000, W, [yes], {"yes"}, TAIL)  # reaches 4,000 samples into the word: part of a word
    assert window_label(4_000, W, [yes], {"yes"}, TAIL, silence="_silence_") == "_silence_"  # ends where it starts
    assert window_label(12_800, W, [yes], {"yes"}, TAIL, silence="_silence_") == "yes"
    assert window_label(30_000, W, [yes], {"yes"}, TAIL) == BACKGROUND  # no such class
    starts, labels = label_windows(64_000, [yes], ["yes"], W, HOP, TAIL, slack=0, silence="_silence_")
    assert set(labels) == {"yes", BACKGROUND, "_silence_"}
    assert all(s + W <= 20_000 or s >= 28_000 for s, lab in zip(starts, labels) if lab == "_silence_")
    _, more, added = add_false_alarms(starts, labels, [60_000], W, [yes], ["yes"], TAIL, silence="_silence_")
    assert added == 1 and more[-1] == "_silence_"


def test_training_windows_use_the_silence_class_of_data_that_has_one(small_corpus):
    from edgedistill.data.manifest import read_manifest
    from edgedistill.data.windows import StreamWindows

    clips = read_manifest(small_corpus, split="train")
    labels = sorted({c.label for c in clips} | {BACKGROUND, "_silence_"})
    ids = {lab: i for i, lab in enumerate(labels)}
    windows = StreamWindows(clips, ["yes"], ids, seconds=20, streams=2)
    quiet = np.isin(windows.labels, [ids["_silence_"], ids[BACKGROUND]])
    assert ids["_silence_"] in windows.labels
    assert (windows.kind[quiet] == 1).all() and windows.is_background[quiet].all()
    assert not windows.is_background[~quiet].any()
    plain = StreamWindows(clips, ["yes"], {k: v for k, v in ids.items() if k != "_silence_"}, seconds=20, streams=2)
    assert ids["_silence_"] not in plain.labels and len(plain) == len(windows)


def test_false_alarms_come_back_as_background_windows_but_never_over_a_whole_target():
    words = [Word("yes", 20_000, 28_000)]
    starts, labels = label_windows(64_000, words, ["yes"], W, HOP, TAIL, slack=0)
    # a planted detector fired at 50,000 (noise) and at 28,800 (on the word itself: a hit, not a false alarm)
    more, more_labels, added = add_false_alarms(starts, labels, [50_000, 28_800], W, words, ["yes"], TAIL)
    assert added == 1 and int(more[-1]) == 50_000 - W and more_labels[-1] == BACKGROUND
    assert len(more) == len(starts) + 1
    # fired on another word the model knows, held whole: it comes back with that word's label
    words.append(Word("no", 40_000, 47_000))
    _, more_labels, added = add_false_alarms(starts, labels, [48_000, 28_800], W, words, ["yes"], TAIL,
                                             others={"no"})
    assert added == 1 and more_labels[-1] == "no"


def test_a_training_stream_can_list_every_word_and_stays_the_same_stream(small_corpus):
    from edgedistill.data.manifest import read_manifest

    clips = read_manifest(small_corpus, split="train")
    audio, targets_only = build_stream(clips, ["yes"], 20, seed=3)
    same, every = build_stream(clips, ["yes"], 20, seed=3, all_words=True)
    assert np.array_equal(audio, same) and len(every) > len(targets_only)
    assert [o for o in every if o.keyword == "yes"] == targets_only
    assert all(w.end > w.start for w in words_of(every))
