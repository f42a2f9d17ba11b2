#!/usr/bin/env python3
"""Listen to the microphone and print keyword events: the device kit's live example.

    pip install sounddevice            # only this script needs it (PortAudio underneath)
    python listen.py model.int8.onnx --keywords yes,stop [--enroll me=a.wav,b.wav --only-enrolled]

The microphone is read in 100 ms blocks of 16 kHz mono int16 by a `sounddevice` callback, which
only queues them; the main thread feeds the queue to `Detector.push` (the events do not depend
on the block size). Ctrl-C stops it and prints the per-hop cost.
"""

import argparse
import json
import queue
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from edgedistill.runtime import EdgeModel  # noqa: E402
from edgedistill.runtime import Detector  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="live keyword detection from the microphone")
    p.add_argument("model", help="the .onnx file")
    p.add_argument("--keywords", help="comma-separated target keywords (default: all)")
    p.add_argument("--detect-threshold", type=float, help="one threshold for every keyword (default: the model's "
                   "calibrated thresholds, else 0.8)")
    p.add_argument("--enroll", action="append", default=[], metavar="NAME=a.wav,b.wav")
    p.add_argument("--only-enrolled", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    try:
        import sounddevice as sd  # imported here: nothing else in the kit needs it
    except ImportError:
        print("listen.py needs sounddevice: pip install sounddevice", file=sys.stderr)
        return 2
    model = EdgeModel(args.model, threads=args.threads)
    for spec in args.enroll:
        name, _, clips = spec.partition("=")
        model.enroll(name, clips.split(","))
    det = Detector(model, args.keywords.split(",") if args.keywords else None, threshold=args.detect_threshold,
                   only_enrolled=args.only_enrolled)
    blocks: queue.Queue = queue.Queue()

    def callback(indata, frames, time_info, status):  # audio thread: queue and return at once
        blocks.put(indata[:, 0].copy())

    with sd.InputStream(samplerate=model.sample_rate, channels=1, dtype="int16", blocksize=model.sample_rate // 10,
                        callback=callback):
        print(f"listening for {[t[1] for t in det.targets]} (Ctrl-C to stop)", file=sys.stderr)
        try:
            while True:
                for event in det.push(blocks.get(), sample_rate=model.sample_rate):
                    print(json.dumps(event.as_dict()), flush=True)
        except KeyboardInterrupt:
            print(json.dumps({"summary": det.stats()}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
