#!/usr/bin/env python3
"""Keyword spotting and speaker verification on a device, with onnxruntime alone.

    python infer.py model.onnx clip.wav               # keyword
    python infer.py model.onnx clip.wav other.wav     # keyword of each + same speaker?
    python infer.py model.onnx clip.wav --threads 2 --json

Audio: mono, 16 kHz, any format soundfile reads (wav, flac, ogg).
Needs only numpy, onnxruntime and soundfile (requirements.txt); the `edgedistill/` folder
next to this script holds the torch-free runtime.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from edgedistill.audio import AudioError  # noqa: E402
from edgedistill.runtime import EdgeModel  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="keyword + speaker verification with an edgedistill ONNX model")
    p.add_argument("model", help="the .onnx file")
    p.add_argument("clips", nargs="+", help="one clip (keyword) or two (keyword + verification)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    p.add_argument("--threshold", type=float, help="override the model's verification threshold")
    p.add_argument("--json", action="store_true", help="print JSON")
    args = p.parse_args(argv)
    if len(args.clips) > 2:
        p.error("give one or two clips")
    try:
        return _infer(args)
    except (AudioError, ValueError, FileNotFoundError, ImportError) as exc:
        # Bad input or a bad model file: one line that says what is wrong, no traceback.
        print(f"infer.py: error: {exc}", file=sys.stderr)
        return 2


def _infer(args) -> int:
    model = EdgeModel(args.model, threads=args.threads)
    result = {"clips": []}
    for clip in args.clips:
        label, probs = model.keyword(clip)
        top = sorted(probs.items(), key=lambda kv: -kv[1])[:3]
        result["clips"].append({"clip": clip, "keyword": label, "top3": top})
    if len(args.clips) == 2:
        result["verification"] = model.verify(args.clips[0], args.clips[1], threshold=args.threshold)
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
