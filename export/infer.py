#!/usr/bin/env python3
"""Keyword spotting and speaker verification on a device, with onnxruntime alone.

    python infer.py model.onnx clip.wav               # keyword
    python infer.py model.onnx clip.wav other.wav     # keyword of each + same speaker?
    python infer.py model.onnx clip.wav --threads 2 --json
    python infer.py model.onnx --stream long.wav --keywords yes,stop --enroll me=a.wav,b.wav
        # -> one JSON line per keyword event (time, keyword, score, speaker), then a summary

Audio: any format soundfile reads (wav, flac, ogg); several channels are averaged into one and
another rate is resampled to the model's 16 kHz (with scipy), each said on stderr.
Needs only numpy, onnxruntime, soundfile and scipy (requirements.txt); the `edgedistill/` folder
next to this script holds the torch-free runtime.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from edgedistill.audio import AudioError, load_audio  # noqa: E402
from edgedistill.runtime import EdgeModel  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="keyword + speaker verification with an edgedistill ONNX model")
    p.add_argument("model", help="the .onnx file")
    p.add_argument("clips", nargs="*", help="one clip (keyword) or two (keyword + verification)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    p.add_argument("--threshold", type=float, help="override the model's verification threshold")
    p.add_argument("--json", action="store_true", help="print JSON")
    s = p.add_argument_group("continuous listening (--stream)")
    s.add_argument("--stream", metavar="LONG.wav", help="detect keywords along a long recording")
    s.add_argument("--keywords", help="comma-separated target keywords (default: those the model has calibrated thresholds for, else all but _silence_/_unknown_)")
    s.add_argument("--detect-threshold", type=float,
                   help="one keyword score threshold (0..1) for every keyword (default: the thresholds calibrated "
                        "into the model at a target false-alarm rate, else 0.8)")
    s.add_argument("--enroll", action="append", default=[], metavar="NAME=a.wav,b.wav",
                   help="enrol a speaker (repeatable); events then say who spoke")
    s.add_argument("--only-enrolled", action="store_true", help="only enrolled speakers trigger events")
    s.add_argument("--hop-ms", type=float, default=100.0, help="evaluation period in ms")
    s.add_argument("--chunk-ms", type=float, default=100.0,
                   help="size of the pieces the file is fed in (the events do not depend on it)")
    args = p.parse_args(argv)
    if not args.stream and not 1 <= len(args.clips) <= 2:
        p.error("give one or two clips, or --stream LONG.wav")
    try:
        return _stream(args) if args.stream else _infer(args)
    except (AudioError, ValueError, FileNotFoundError, ImportError) as exc:
        # Bad input or a bad model file: one line that says what is wrong, no traceback.
        print(f"infer.py: error: {exc}", file=sys.stderr)
        return 2


def _stream(args) -> int:
    import soundfile as sf

    from edgedistill.runtime import Detector

    model = EdgeModel(args.model, threads=args.threads)
    for spec in args.enroll:
        name, _, clips = spec.partition("=")
        if not name or not clips:
            raise ValueError(f"--enroll {spec!r}: write NAME=clip1.wav,clip2.wav")
        model.enroll(name, clips.split(","))
    keywords = args.keywords.split(",") if args.keywords else None
    det = Detector(model, keywords, threshold=args.detect_threshold, hop_s=args.hop_ms / 1000,
                   only_enrolled=args.only_enrolled, sv_threshold=args.threshold)
    try:
        info = sf.info(args.stream)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(f"cannot read '{args.stream}': {exc}") from exc
    events = 0
    if info.channels == 1 and info.samplerate == model.sample_rate:  # read as it plays, a block at a time
        block = max(1, int(info.samplerate * args.chunk_ms / 1000))
        chunks = sf.blocks(args.stream, blocksize=block, dtype="float32")
    else:  # averaged to mono and resampled whole, then fed in blocks
        audio = _load(args.stream, model.sample_rate)
        block = max(1, int(model.sample_rate * args.chunk_ms / 1000))
        chunks = (audio[i:i + block] for i in range(0, len(audio), block))
    for chunk in chunks:
        for event in det.push(chunk, sample_rate=model.sample_rate):
            print(json.dumps(event.as_dict()), flush=True)
            events += 1
    for event in det.flush():
        print(json.dumps(event.as_dict()), flush=True)
        events += 1
    print(json.dumps({"summary": {"audio_s": round(info.frames / info.samplerate, 3), "events": events,
                                  "keywords": [t[1] for t in det.targets],
                                  "thresholds": {name: thr for _, name, thr in det.targets},
                                  "sv_threshold": det.sv_threshold, **det.stats()}}))
    return 0


def _load(path: str, sample_rate: int):
    """A file as the model's mono float32 audio; averaging channels or resampling is said on stderr."""
    import soundfile as sf

    try:
        info = sf.info(path)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(f"cannot read '{path}': {exc}") from exc
    if info.channels != 1:
        print(f"infer.py: '{path}' has {info.channels} channels: averaged into one", file=sys.stderr)
    if info.samplerate != sample_rate:
        print(f"infer.py: '{path}' is at {info.samplerate} Hz: resampled to {sample_rate} Hz", file=sys.stderr)
    return load_audio(path, target_sr=sample_rate, downmix=True)


def _infer(args) -> int:
    model = EdgeModel(args.model, threads=args.threads)
    result = {"clips": []}
    audio = {clip: _load(clip, model.sample_rate) for clip in args.clips}
    for clip in args.clips:
        label, probs = model.keyword(audio[clip], sample_rate=model.sample_rate)
        top = sorted(probs.items(), key=lambda kv: -kv[1])[:3]
        result["clips"].append({"clip": clip, "keyword": label, "top3": top})
    if len(args.clips) == 2:
        result["verification"] = model.verify(audio[args.clips[0]], audio[args.clips[1]], threshold=args.threshold)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    for c in result["clips"]:
        alts = ", ".join(f"{k} {v:.2f}" for k, v in c["top3"])
        print(f"{c['clip']}: {c['keyword']}  ({alts})")
    if "verification" in result:
        v = result["verification"]
        verdict = "same speaker" if v["same_speaker"] else "different speakers"
        print(f"verification: {verdict} (score {v['score']:.3f}, threshold {v['threshold']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
