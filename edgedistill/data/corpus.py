"""The embedded corpus: a small, deterministic, multi-speaker keyword corpus made by a
formant synthesiser in plain numpy (no downloads, no data files).

Each keyword is a sequence of phone-like segments (vowels with formant targets and
glides between them, nasals, fricatives as band-limited noise, stop closures and bursts).
Speakers differ audibly: pitch (f0), vocal-tract length (all formants scaled), speaking
rate, spectral tilt and breathiness. Each take jitters pitch, formants, timing and level,
and the word sits at a random onset in a 1 s clip over pink background noise at a random
SNR. It exists so the demo and the tests run anywhere; it is not a substitute for real
speech in benchmarks.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import shutil
import typing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgedistill.config import ConfigError, from_dict

SR = 16_000
GENERATOR_VERSION = 2

# Formant targets (F1, F2, F3) in Hz for an adult male vocal tract (Peterson & Barney-like).
_V = {
    "i": (270, 2290, 3010), "I": (390, 1990, 2550), "E": (530, 1840, 2480),
    "ae": (660, 1720, 2410), "A": (730, 1090, 2440), "V": (640, 1190, 2390),
    "O": (570, 840, 2410), "o": (480, 900, 2350), "u": (300, 870, 2240),
    "j": (280, 2200, 3000), "w": (300, 700, 2200), "l": (360, 1000, 2600),
    "r": (350, 1200, 1600), "n": (250, 1450, 2500), "m": (250, 1000, 2200),
}
# Segment = (kind, duration ms, spec). kinds: v = voiced (spec: start[, end] phone),
# n = nasal (voiced, quieter), f = fricative (spec: band Hz), c = closure (spec: voiced bar?),
# b = burst (spec: band Hz).
KEYWORDS: dict[str, list[tuple]] = {
    "yes": [("v", 60, ("j", "E")), ("v", 170, ("E",)), ("f", 150, (4000, 7500))],
    "no": [("n", 80, ("n",)), ("v", 260, ("o", "u"))],
    "up": [("v", 190, ("V",)), ("c", 70, False), ("b", 40, (500, 2000))],
    "down": [("c", 30, True), ("b", 20, (2500, 5000)), ("v", 250, ("A", "u")), ("n", 100, ("n",))],
    "left": [("v", 70, ("l", "E")), ("v", 140, ("E",)), ("f", 110, (1500, 7500)),
             ("c", 40, False), ("b", 30, (3000, 6000))],
    "right": [("v", 90, ("r", "A")), ("v", 240, ("A", "i")), ("c", 50, False), ("b", 30, (3000, 6000))],
    "on": [("v", 200, ("A",)), ("n", 130, ("n",))],
    "off": [("v", 200, ("O",)), ("f", 170, (1200, 7000))],
    "stop": [("f", 140, (4000, 7500)), ("c", 40, False), ("b", 25, (3000, 6000)),
             ("v", 170, ("A",)), ("c", 60, False), ("b", 30, (500, 2000))],
    "go": [("c", 30, True), ("b", 20, (1200, 2500)), ("v", 270, ("o", "u"))],
}


@dataclass
class CorpusConfig:
    """What the embedded corpus contains. Same config -> bit-identical corpus."""

    keywords: list[str] = field(default_factory=lambda: list(KEYWORDS),
                                metadata={"help": "keywords to synthesise (from KEYWORDS)"})
    num_speakers: int = field(default=24, metadata={"help": "number of synthetic speakers"})
    takes: int = field(default=3, metadata={"help": "takes of each keyword per speaker"})
    splits: tuple[int, int, int] = field(default=(16, 4, 4), metadata={
        "help": "speakers in train, val, test (speaker-disjoint; must sum to num_speakers)"})
    clip_seconds: float = field(default=1.0, metadata={"help": "clip length in seconds"})
    snr_db: tuple[float, float] = field(default=(10.0, 30.0), metadata={
        "help": "range of the background-noise SNR in dB, drawn per clip"})
    seed: int = field(default=0, metadata={"help": "seed of speakers and takes"})

    def __post_init__(self):
        unknown = [k for k in self.keywords if k not in KEYWORDS]
        if unknown:
            raise ValueError(f"unknown keywords {unknown}; available: {sorted(KEYWORDS)}")
        if len(self.keywords) < 2:
            raise ValueError("the corpus needs at least 2 keywords")
        self.splits = tuple(int(s) for s in self.splits)
        if sum(self.splits) != self.num_speakers or len(self.splits) != 3 or min(self.splits) < 0:
            raise ValueError(f"splits {self.splits} must be 3 non-negative counts summing to "
                             f"num_speakers={self.num_speakers}")
        if self.takes < 1 or self.clip_seconds < 0.5:
            raise ValueError("takes must be >= 1 and clip_seconds >= 0.5")

    def key(self) -> str:
        blob = json.dumps({"v": GENERATOR_VERSION, **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Speaker:
    name: str
    f0: float          # mean pitch, Hz
    vtl: float         # formant scale (shorter vocal tract -> > 1)
    rate: float        # duration scale (> 1 is slower)
    tilt: float        # harmonic amplitude ~ k ** -tilt
    breath: float      # breath noise level relative to voicing
    offsets: tuple[float, float, float] = (1.0, 1.0, 1.0)  # individual F1-F3 factors
    f4: float = 3500.0     # a speaker-specific high resonance (Hz, before vtl scaling)
    f4_gain: float = 0.3   # its strength
    vibrato: float = 5.0   # pitch-modulation rate (Hz)


def make_speakers(n: int, seed: int) -> list[Speaker]:
    """Speakers spread over pitch and vocal-tract length, correlated as in people."""
    rng = np.random.default_rng([seed, 1])
    out = []
    for i in range(n):
        size = (i + rng.uniform(0.1, 0.9)) / n           # 0 = large tract, 1 = small
        out.append(Speaker(
            name=f"spk{i:02d}",
            f0=float(85 * (2.9 ** size) * rng.uniform(0.92, 1.08)),
            vtl=float((0.86 + 0.36 * size) * rng.uniform(0.96, 1.04)),
            rate=float(rng.uniform(0.8, 1.25)),
            tilt=float(rng.uniform(0.8, 1.6)),
            breath=float(rng.uniform(0.02, 0.15)),
            offsets=tuple(float(x) for x in rng.uniform(0.9, 1.1, size=3)),
            f4=float(rng.uniform(3000, 4200)),
            f4_gain=float(rng.uniform(0.1, 0.6)),
            vibrato=float(rng.uniform(3.0, 7.0)),
        ))
    order = np.random.default_rng([seed, 2]).permutation(n)  # split is not sorted by size
    return [out[j] for j in order]


def _smooth(x: np.ndarray, ms: float) -> np.ndarray:
    w = max(1, int(SR * ms / 1000))
    kernel = np.hanning(w + 2)[1:-1]
    kernel /= kernel.sum()
    pad = np.pad(x, (w, w), mode="edge")
    return np.convolve(pad, kernel, mode="same")[w:-w]


def _band_noise(rng: np.random.Generator, n: int, lo: float, hi: float) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SR)
    spec[(freqs < lo) | (freqs > hi)] = 0
    out = np.fft.irfft(spec, n)
    return out / (np.std(out) + 1e-9)


def synth_word(word: str, spk: Speaker, rng: np.random.Generator) -> np.ndarray:
    """One take of `word` by `spk`: float32 [samples] at 16 kHz, peak about 0.5."""
    segs = KEYWORDS[word]
    rate = spk.rate * rng.uniform(0.92, 1.08)
    lens = [max(1, int(SR * d / 1000 * rate * rng.uniform(0.9, 1.1))) for _, d, _ in segs]
    n = sum(lens)
    formants = np.zeros((3, n))
    voice = np.zeros(n)
    noise = np.zeros(n)
    last = np.array(_V["A"], dtype=float)
    pos = 0
    for (kind, _, spec), m in zip(segs, lens):
        sl = slice(pos, pos + m)
        if kind in ("v", "n"):
            start = np.array(_V[spec[0]], dtype=float)
            end = np.array(_V[spec[-1]], dtype=float)
            formants[:, sl] = start[:, None] + (end - start)[:, None] * np.linspace(0, 1, m)
            voice[sl] = 1.0 if kind == "v" else 0.35
            last = end
        else:
            formants[:, sl] = last[:, None]
            if kind == "c":
                voice[sl] = 0.08 if spec else 0.0
            else:
                lo, hi = spec
                amp = 0.5 if kind == "f" else 0.9
                env = np.minimum(1, np.minimum(np.arange(m), np.arange(m)[::-1]) / (0.005 * SR) + 0.05)
                noise[sl] = amp * env * _band_noise(rng, m, lo * spk.vtl, min(hi * spk.vtl, 7900))
        pos += m
    formants = np.stack([_smooth(f, 25) for f in formants])
    formants *= spk.vtl * np.asarray(spk.offsets)[:, None] * rng.uniform(0.98, 1.02, size=(3, 1))
    formants = np.vstack([formants, np.full((1, n), spk.f4 * spk.vtl)])
    voice = _smooth(voice, 12)

    t = np.arange(n) / n
    f0 = spk.f0 * rng.uniform(0.97, 1.03) * (1.08 - 0.16 * t) * (1 + 0.015 * np.sin(2 * np.pi * spk.vibrato * t * n / SR))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    n_harm = int(7600 // f0.max())
    k = np.arange(1, n_harm + 1)[:, None]
    hf = k * f0[None, :]                                   # harmonic frequencies [K, n]
    bw = np.array([90.0, 110.0, 170.0, 250.0])[:, None, None] * spk.vtl
    gains = np.array([1.0, 0.6, 0.35, spk.f4_gain])[:, None, None]
    env = np.sum(1.0 / (1.0 + ((hf[None] - formants[:, None, :]) / (bw / 2)) ** 2) * gains, axis=0)
    harm = np.sum(env * k ** (-spk.tilt + 1.0) / k * np.sin(k * phase[None, :]), axis=0)
    harm /= np.abs(harm).max() + 1e-9
    breath = 0.3 * spk.breath * _band_noise(rng, n, 300, 7000)
    word_wave = voice * (harm + breath) + 0.6 * noise
    word_wave /= np.abs(word_wave).max() + 1e-9
    return (0.5 * word_wave).astype(np.float32)


def _pink_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SR)
    spec /= np.sqrt(np.maximum(freqs, 20.0))
    out = np.fft.irfft(spec, n)
    return out / (np.std(out) + 1e-9)


def synth_clip(word: str, spk: Speaker, rng: np.random.Generator, cfg: CorpusConfig) -> np.ndarray:
    """A `cfg.clip_seconds` clip: the word at a random onset over background noise."""
    n = int(SR * cfg.clip_seconds)
    w = synth_word(word, spk, rng)[: n - int(0.1 * SR)]
    w *= rng.uniform(0.4, 1.0)
    onset = int(rng.integers(int(0.05 * SR), n - len(w) - int(0.05 * SR) + 1))
    clip = np.zeros(n, dtype=np.float32)
    clip[onset:onset + len(w)] = w
    snr = rng.uniform(*cfg.snr_db)
    sig_rms = np.sqrt(np.mean(w.astype(np.float64) ** 2))
    clip += (sig_rms / 10 ** (snr / 20) * _pink_noise(rng, n)).astype(np.float32)
    return np.clip(clip, -1, 1)


def parse_corpus_spec(spec: str) -> CorpusConfig:
    """`embedded` or `embedded:key=value,...` (CorpusConfig fields; tuples joined by '/'), e.g.
    `embedded:num_speakers=72,splits=64/8/0,seed=1`: another corpus from the same synthesiser."""
    kind, _, rest = str(spec).partition(":")
    if kind != "embedded":
        raise ValueError(f"'{spec}' is not an embedded-corpus spec ('embedded' or 'embedded:key=value,...')")
    listed = {k for k, tp in typing.get_type_hints(CorpusConfig).items() if typing.get_origin(tp) in (list, tuple)}
    values: dict = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = (part.strip() for part in item.partition("="))
        if not eq:
            raise ValueError(f"'{item}' in '{spec}': write key=value (CorpusConfig fields)")
        values[key] = value.split("/") if key in listed else value
    if "num_speakers" in values and "splits" not in values:
        raise ValueError(f"'{spec}' sets num_speakers: also set splits=TRAIN/VAL/TEST summing to it")
    try:
        return from_dict(CorpusConfig, values)
    except ConfigError as exc:
        raise ConfigError(f"'{spec}': {exc}") from None


def default_cache_dir() -> Path:
    return Path(os.environ.get("EDGEDISTILL_CACHE", Path.home() / ".cache" / "edgedistill"))


def _write_clips(args) -> None:
    """Synthesises and writes a chunk of clips (a worker process's share of `build_corpus`)."""
    import soundfile as sf

    cfg, folder, jobs = args
    for word, spk, take, rel in jobs:
        seed = [cfg.seed, int(spk.name[3:]), sorted(KEYWORDS).index(word), take]
        sf.write(folder / rel, synth_clip(word, spk, np.random.default_rng(seed), cfg), SR, subtype="PCM_16")


def _synthesise_in_workers(cfg: CorpusConfig, folder: Path, jobs: list, workers: int, bar) -> None:
    """Writes `jobs` in `workers` processes, each a fresh `python -m edgedistill.data.corpus`
    reading its share from stdin. Not multiprocessing: a spawned child re-runs the caller's
    script, and a script without `if __name__ == "__main__":` would train again in each one;
    a forked child would inherit the caller's torch threads. PYTHONSAFEPATH: the workers import the
    package the caller runs, not a checkout that happens to be the working directory."""
    import pickle
    import subprocess
    import sys
    import time

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONSAFEPATH": "1"}
    procs = []
    try:
        for share in (jobs[k::workers] for k in range(workers)):
            proc = subprocess.Popen([sys.executable, "-m", "edgedistill.data.corpus"], stdin=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=env)
            procs.append(proc)
            proc.stdin.write(pickle.dumps((cfg, folder, share)))
            proc.stdin.close()
        done = 0
        while any(p.poll() is None for p in procs):
            time.sleep(0.2)
            if bar:
                now = sum(len(os.listdir(folder / "audio" / w)) for w in cfg.keywords)
                bar.update(now - done)
                done = now
        for proc in procs:
            if proc.returncode:
                raise RuntimeError(f"embedded corpus: a synthesis worker failed (exit {proc.returncode}):\n"
                                   f"{proc.stderr.read().decode(errors='replace')[-2000:]}\n"
                                   "build it in one process with workers=1 to see the error there")
        if bar:
            bar.update(len(jobs) - done)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stderr.close()


def build_corpus(cfg: CorpusConfig | None = None, root: str | os.PathLike | None = None,
                 progress: bool = False, workers: int | None = None) -> Path:
    """Generates the corpus (or finds it cached) and returns its `manifest.csv` path.

    The folder is `root/corpus-<config hash>`; it is written under a temporary name and
    renamed when complete, so an interrupted run never leaves a half corpus behind.
    Columns: path,label,speaker,split,text (paths relative to the manifest). Clips are
    synthesised by `workers` processes (default: one per core for corpora over 200 clips);
    each clip has its own seed, so the corpus is the same whatever the number.
    """
    cfg = cfg or CorpusConfig()
    root = Path(root) if root is not None else default_cache_dir()
    final = root / f"corpus-{cfg.key()}"
    manifest = final / "manifest.csv"
    if manifest.exists():
        return manifest
    tmp = root / f".corpus-{cfg.key()}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "audio").mkdir(parents=True)
    speakers = make_speakers(cfg.num_speakers, cfg.seed)
    split_of = {}
    names = ["train", "val", "test"]
    i = 0
    for name, count in zip(names, cfg.splits):
        for spk in speakers[i:i + count]:
            split_of[spk.name] = name
        i += count
    jobs = [(w, s, t, f"audio/{w}/{s.name}_{t:02d}.wav") for s in speakers for w in cfg.keywords
            for t in range(cfg.takes)]
    for w in cfg.keywords:
        (tmp / "audio" / w).mkdir()
    rows = [{"path": rel, "label": w, "speaker": s.name, "split": split_of[s.name], "text": w}
            for w, s, _, rel in jobs]
    workers = workers or (min(os.cpu_count() or 1, 8) if len(jobs) > 200 else 1)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(jobs), desc="embedded corpus", unit="clip")
    try:
        if workers > 1:
            _synthesise_in_workers(cfg, tmp, jobs, workers, bar)
        else:
            for job in jobs:
                _write_clips((cfg, tmp, [job]))
                if bar:
                    bar.update(1)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # no half corpus left behind
        raise
    finally:
        if bar:
            bar.close()
    with open(tmp / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label", "speaker", "split", "text"])
        writer.writeheader()
        writer.writerows(rows)
    (tmp / "corpus_config.json").write_text(json.dumps(
        {"generator_version": GENERATOR_VERSION, **dataclasses.asdict(cfg)}, indent=1))
    try:
        os.replace(tmp, final)
    except OSError:  # another process finished first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


if __name__ == "__main__":  # a synthesis worker of build_corpus: (config, folder, jobs) pickled on stdin
    import pickle
    import sys

    _write_clips(pickle.load(sys.stdin.buffer))
