"""Manifests: CSV files `path,label,speaker,split[,text]`, paths relative to the manifest.

The format of `shared/data/arabic_speech_commands/manifest.csv` and of the embedded corpus.
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif", ".au")


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the file, row and fix."""


@dataclass(frozen=True)
class Clip:
    path: Path
    label: str | None = None
    speaker: str | None = None
    split: str | None = None
    text: str | None = None
    offset: int = 0              # first sample of a segment of the file (e.g. a _silence_ crop)
    frames: int | None = None    # segment length in samples (None: to the end)


def read_manifest(path: str | os.PathLike, split: str | None = None,
                  required: tuple[str, ...] = ("path",), check_files: bool = True) -> list[Clip]:
    """Reads a manifest, optionally keeping one split.

    Args:
        path: the CSV file.
        split: keep only rows of this split (None: all rows).
        required: columns that must be present (e.g. ("path", "label", "speaker")).
        check_files: fail on rows whose audio file is missing.

    Exact duplicate rows are dropped with a warning (a file paired with its own copy would
    make a same-speaker trial of one clip with itself); the same file listed with different
    labels, speakers or splits is an error.

    Raises:
        FileNotFoundError: the manifest is missing.
        ManifestError: missing columns, empty values, unknown split, missing audio files,
            contradictory duplicate rows.
    """
    path = Path(path)
    if path.is_dir():
        raise ManifestError(f"manifest '{path}' is a folder: pass the CSV file inside it "
                            "(or the folder itself as data, where it holds manifest.csv)")
    if not path.is_file():
        raise FileNotFoundError(f"manifest '{path}' does not exist")
    # utf-8-sig: Excel's "CSV UTF-8" starts the file with a byte-order mark, which would
    # otherwise become part of the first column's name.
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        missing = [c for c in required if c not in columns]
        if missing:
            raise ManifestError(f"manifest '{path}' lacks column(s) {missing}; it has {columns}. "
                                "Expected header: path,label,speaker,split[,text]")
        rows = list(reader)
    if not rows:
        raise ManifestError(f"manifest '{path}' has no rows")
    if split is not None:
        if "split" not in columns:
            raise ManifestError(f"split '{split}' was asked for but manifest '{path}' has no "
                                "'split' column: add one or pass no split")
        splits = sorted({r["split"] for r in rows})
        rows = [r for r in rows if r["split"] == split]
        if not rows:
            raise ManifestError(f"manifest '{path}' has no rows of split '{split}'; "
                                f"its splits are {splits}")
    rows = _drop_duplicates(path, rows)
    base = path.parent
    clips, missing_files = [], []
    for i, r in enumerate(rows, start=2):
        for c in required:
            if not (r.get(c) or "").strip():
                raise ManifestError(f"manifest '{path}' row {i}: empty '{c}'")
        p = Path(r["path"])
        p = p if p.is_absolute() else base / p
        if check_files and not p.is_file():
            missing_files.append(str(p))
        clips.append(Clip(p, r.get("label") or None, r.get("speaker") or None,
                          r.get("split") or None, r.get("text") or None))
    if missing_files:
        raise ManifestError(f"manifest '{path}': {len(missing_files)} audio file(s) are missing, "
                            f"e.g. {missing_files[:3]}; fix the paths (relative to the manifest)")
    return clips


def _drop_duplicates(path: Path, rows: list[dict]) -> list[dict]:
    """Rows with exact duplicates dropped (warned); a path listed twice with different values
    is a ManifestError."""
    seen: dict[str, dict] = {}
    kept, dropped = [], 0
    for r in rows:
        key = (r.get("path") or "").strip()
        if key in seen:
            if seen[key] != r:
                diff = sorted(k for k in r if seen[key].get(k) != r.get(k))
                raise ManifestError(f"manifest '{path}' lists '{key}' twice with different {diff}: "
                                    "keep one row per audio file")
            dropped += 1
            continue
        seen[key] = r
        kept.append(r)
    if dropped:
        log.warning("manifest '%s': dropped %d duplicate row(s) (the same file listed again)", path, dropped)
    return kept


def resolve_audio(data: str | os.PathLike, split: str | None = None) -> list[Clip]:
    """Clips from `data`: "embedded" (the embedded corpus; `embedded:key=value,...` another one
    from the same synthesiser), a manifest CSV, a folder with a `manifest.csv`, or a folder of
    audio files (searched recursively; `split` ignored)."""
    if str(data) == "embedded" or str(data).startswith("embedded:"):
        from edgedistill.data.corpus import build_corpus, parse_corpus_spec

        return read_manifest(build_corpus(parse_corpus_spec(str(data)), progress=True), split=split)
    p = Path(data)
    if p.is_file():
        return read_manifest(p, split=split)
    if p.is_dir():
        if (p / "manifest.csv").is_file():
            return read_manifest(p / "manifest.csv", split=split)
        files = sorted(f for f in p.rglob("*") if f.suffix.lower() in AUDIO_EXTENSIONS)
        if not files:
            raise ManifestError(f"folder '{p}' has no manifest.csv and no audio files "
                                f"({', '.join(AUDIO_EXTENSIONS)})")
        return [Clip(f) for f in files]
    raise FileNotFoundError(f"data '{data}' is neither 'embedded', a manifest CSV nor a folder")


def load_clip(clip: Clip):
    """The clip's audio (mono float32, 16 kHz), cut to its segment when it has one."""
    from edgedistill.audio import load_audio

    audio = load_audio(clip.path, downmix=True)
    if clip.offset or clip.frames:
        audio = audio[clip.offset: clip.offset + clip.frames if clip.frames else None]
    return audio
