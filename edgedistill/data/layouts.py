"""Public dataset layouts read in place: Google Speech Commands (SUPERB KS protocol) and
VoxCeleb1 (SV), plus `resolve_labelled`, which turns any data spec into clips.

Data specs: "embedded", a manifest CSV, a folder with `manifest.csv`,
"speech_commands:DIR" (SUPERB's 12 classes), "speech_commands35:DIR" (every word folder
as its own class, plus `_silence_`), "voxceleb:DIR". Any of them + "+silence=NOISE_DIR" adds a
`_silence_` class of 1 s crops of the background recordings in NOISE_DIR (as Speech Commands
does with `_background_noise_`), so a streaming detector has a class for "no keyword here":
`data=manifest.csv+silence=background_noise/`.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

from edgedistill.audio import audio_num_samples
from edgedistill.data.manifest import Clip, ManifestError, resolve_audio

SUPERB_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN, SILENCE = "_unknown_", "_silence_"
SUPERB_LABELS = list(SUPERB_WORDS) + [UNKNOWN, SILENCE]
SPLITS = ("train", "val", "test")
# Each background-noise file is cut in time so that splits never share noise:
# the first 80% feeds train, the next 10% val, the last 10% test.
_NOISE_PARTS = {"train": (0.0, 0.8), "val": (0.8, 0.9), "test": (0.9, 1.0)}


def _speaker_of(path: Path) -> str:
    """Speech Commands file names are `<speaker hash>_nohash_<take>.wav`."""
    return path.name.split("_nohash_")[0]


def _read_list(path: Path) -> set[str]:
    return {line.strip() for line in path.read_text().splitlines() if line.strip()} if path.exists() else set()


def speech_commands_clips(root: str | Path, split: str, all_words: bool = False,
                          seconds: float = 1.0) -> list[Clip]:
    """Speech Commands (v0.01 / v0.02 folder layout) for one split.

    SUPERB KS protocol: the 10 words keep their label, every other word becomes `_unknown_`,
    and `_silence_` clips are 1 s crops of `_background_noise_` (as many as the average word
    class of the split). Splits come from `validation_list.txt` / `testing_list.txt`; the rest
    is train. A folder laid out like the separate test archive (folders `_unknown_` and
    `_silence_` holding clips) is read as it is. The speaker is the file-name prefix.
    """
    root = Path(root)
    if split not in SPLITS:
        raise ManifestError(f"unknown split '{split}' for Speech Commands: use one of {SPLITS}")
    if not root.is_dir():
        raise FileNotFoundError(f"Speech Commands folder '{root}' does not exist")
    val, test = _read_list(root / "validation_list.txt"), _read_list(root / "testing_list.txt")
    word_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("_background"))
    if not word_dirs:
        raise ManifestError(f"'{root}' has no word folders: expected the Speech Commands layout "
                            "(yes/, no/, ..., _background_noise_/, validation_list.txt, testing_list.txt)")
    archive = (root / SILENCE).is_dir()   # the separate test archive: take everything as is
    clips = []
    for d in word_dirs:
        label = d.name if (all_words or d.name in SUPERB_LABELS) else UNKNOWN
        for f in sorted(d.glob("*.wav")):
            rel = f"{d.name}/{f.name}"
            s = "test" if rel in test else "val" if rel in val else "train"
            if archive or s == split:
                clips.append(Clip(f, label, None if label == SILENCE else _speaker_of(f), split, d.name))
    if not clips:
        raise ManifestError(f"Speech Commands folder '{root}' has no clips of split '{split}'")
    if not archive:
        clips += silence_clips(sorted((root / "_background_noise_").glob("*.wav")), split, clips, seconds)
    return clips


def silence_clips(noise: list[Path], split: str, clips: list[Clip], seconds: float = 1.0) -> list[Clip]:
    """`_silence_` clips: `seconds`-long crops of the `noise` recordings, as many as the average
    word class of `clips`. Each recording is cut in time (train 80%, val 10%, test 10%) so that
    splits never share noise; crops are fixed by a hash, the same on every call."""
    if not noise:
        return []
    counts = Counter(c.label for c in clips if c.label != UNKNOWN)
    n = max(1, round(sum(counts.values()) / max(1, len(counts))))
    frames = int(seconds * 16_000)
    spans = []
    for f in noise:
        total = audio_num_samples(f)
        lo, hi = (int(total * x) for x in _NOISE_PARTS[split])
        if hi - lo >= frames:
            spans.append((f, lo, hi))
    if not spans:
        return []
    out = []
    for i in range(n):
        f, lo, hi = spans[i % len(spans)]
        k = i // len(spans)
        h = int(hashlib.sha256(f"{f.name}:{split}:{k}".encode()).hexdigest()[:8], 16)
        out.append(Clip(f, SILENCE, None, split, SILENCE, offset=lo + h % (hi - lo - frames + 1), frames=frames))
    return out


def voxceleb_clips(root: str | Path, split: str, val_fraction: float = 0.05) -> list[Clip]:
    """VoxCeleb1 (`[wav/]id*/VIDEO/*.wav`). The test speakers are those of the trial list
    (`veri_test2.txt`, `veri_test.txt` or `List_of_trial_pairs.txt` in DIR); the others are
    the dev set, of which a fixed `val_fraction` of speakers is held out as `val`."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"VoxCeleb folder '{root}' does not exist")
    base = root / "wav" if (root / "wav").is_dir() else root
    spk_dirs = sorted(d for d in base.glob("id*") if d.is_dir())
    if not spk_dirs:
        raise ManifestError(f"'{root}' has no id*/ speaker folders: expected the VoxCeleb1 layout "
                            "(wav/id10001/VIDEO/00001.wav)")
    trial_file = find_trial_list(root)
    test_spk = {p.split("/")[0] for row in (read_trial_list(trial_file) if trial_file else []) for p in row[1:]}
    dev = [d.name for d in spk_dirs if d.name not in test_spk]
    n_val = max(1, int(round(val_fraction * len(dev)))) if len(dev) > 1 else 0
    val_spk = set(sorted(dev, key=lambda s: hashlib.sha256(s.encode()).hexdigest())[:n_val])
    clips = []
    for d in spk_dirs:
        s = "test" if d.name in test_spk else "val" if d.name in val_spk else "train"
        if s == split:
            clips += [Clip(f, None, d.name, s) for f in sorted(d.glob("*/*.wav"))]
    if not clips:
        raise ManifestError(f"VoxCeleb folder '{root}' has no clips of split '{split}'")
    return clips


def find_trial_list(root: Path) -> Path | None:
    for name in ("veri_test2.txt", "veri_test.txt", "List_of_trial_pairs.txt"):
        if (root / name).is_file():
            return root / name
    return None


def read_trial_list(path: str | Path) -> list[tuple[int, str, str]]:
    """VoxCeleb trial list: lines `LABEL id10270/VIDEO/00001.wav id10271/VIDEO/00002.wav`."""
    rows = []
    for i, line in enumerate(Path(path).read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3 or parts[0] not in ("0", "1"):
            raise ManifestError(f"trial list '{path}' line {i}: expected 'LABEL PATH PATH', got '{line}'")
        rows.append((int(parts[0]), parts[1], parts[2]))
    return rows


SILENCE_SUFFIX = "+silence="
_NOISE_SUFFIXES = (".wav", ".flac", ".ogg")


def noise_files(folder: str | Path) -> list[Path]:
    """The background recordings of a noise folder (wav, flac, ogg), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"noise folder '{folder}' does not exist (the part after '{SILENCE_SUFFIX}' "
                                "in the data spec, or the noise option)")
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in _NOISE_SUFFIXES)
    if not files:
        raise ManifestError(f"noise folder '{folder}' holds no .wav, .flac or .ogg recordings")
    return files


def silence_folder(spec: str) -> str | None:
    """The noise folder of a data spec's `+silence=` part, or None."""
    spec = str(spec)
    return spec.rpartition(SILENCE_SUFFIX)[2] if SILENCE_SUFFIX in spec else None


def noise_for_split(folder: str | Path, split: str) -> list:
    """The `split` part of each background recording in `folder` (the same cut in time as the
    `_silence_` crops, so a test stream's background never overlaps the training noise)."""
    from edgedistill.audio import load_audio

    lo, hi = _NOISE_PARTS.get(split, (0.0, 1.0))
    out = []
    for f in noise_files(folder):
        audio = load_audio(f, downmix=True)
        out.append(audio[int(len(audio) * lo):int(len(audio) * hi)])
    return out


def distillation_clips(spec: str, split: str | None) -> list[Clip]:
    """The speech of any data spec for distillation: a `+silence=` part is left out (the
    student learns the teacher's view of speech, not of 1 s noise crops)."""
    spec = str(spec)
    return resolve_labelled(spec.rpartition(SILENCE_SUFFIX)[0] if SILENCE_SUFFIX in spec else spec, split)


def stream_noise(spec: str, split: str, folder: str | None = None) -> tuple[str | None, list | None]:
    """(folder, recordings) for the background of a test stream of `split`: `folder`, else the
    data's `+silence=` folder, cut to the split's part; (None, None) means synthetic noise."""
    folder = folder or silence_folder(spec)
    return folder, (noise_for_split(folder, split) if folder else None)


_PREFIXED = ("speech_commands", "speech_commands35", "voxceleb")


def check_keywords(targets: list[str], clips: list[Clip], where: str) -> None:
    """Target keywords that are not labels of `clips` (or none at all): a `ConfigError` naming
    them, the closest label, and the choices."""
    import difflib

    from edgedistill.config import ConfigError

    labels = sorted({c.label for c in clips} - {None})
    unknown = [k for k in targets if k not in labels]
    if not targets or unknown:
        close = {k: difflib.get_close_matches(k, labels, n=1) for k in unknown}
        hint = "; ".join(f"'{k}': did you mean '{c[0]}'?" for k, c in close.items() if c)
        raise ConfigError(f"--keywords {','.join(unknown) or '(none)'}: not keywords of {where}"
                          + (f" ({hint})" if hint else "") + f"; choose among {','.join(labels)}")


def spec_paths(spec: str) -> list[str]:
    """The files and folders a data spec names ('embedded' and other names without a path: none)."""
    spec = str(spec)
    if SILENCE_SUFFIX in spec:
        base, _, noise_dir = spec.rpartition(SILENCE_SUFFIX)
        return spec_paths(base) + [noise_dir]
    kind, _, path = spec.partition(":")
    if kind in _PREFIXED and path:
        return [path]
    return [] if spec == "embedded" or ":" in spec else [spec]


def rebase_spec(spec: str, base: Path) -> str:
    """`spec` with each relative path it names joined to `base`."""
    spec = str(spec)
    if SILENCE_SUFFIX in spec:
        head, _, noise_dir = spec.rpartition(SILENCE_SUFFIX)
        return rebase_spec(head, base) + SILENCE_SUFFIX + str(Path(base) / noise_dir)
    kind, _, path = spec.partition(":")
    if kind in _PREFIXED and path:
        return f"{kind}:{Path(base) / path}"
    return str(Path(base) / spec) if spec_paths(spec) and not Path(spec).is_absolute() else spec


def resolve_labelled(spec: str, split: str | None) -> list[Clip]:
    """Clips of `split` from any data spec (see the module docstring)."""
    spec = str(spec)
    if SILENCE_SUFFIX in spec:
        base, _, noise_dir = spec.rpartition(SILENCE_SUFFIX)
        clips = resolve_labelled(base, split)
        if any(c.label == SILENCE for c in clips):
            raise ManifestError(f"'{base}' already has a '{SILENCE}' class: drop '{SILENCE_SUFFIX}{noise_dir}'")
        extra = silence_clips(noise_files(noise_dir), split or "train", clips)
        if not extra:
            raise ManifestError(f"the recordings in '{noise_dir}' are too short for 1 s '{SILENCE}' crops in the "
                                f"'{split}' part (each split gets 10-80% of every file): use longer recordings")
        return clips + extra
    kind, _, path = spec.partition(":")
    if kind in ("speech_commands", "speech_commands35") and path:
        return speech_commands_clips(path, split or "train", all_words=kind == "speech_commands35")
    if kind == "voxceleb" and path:
        return voxceleb_clips(path, split or "train")
    return resolve_audio(spec, split=split)
