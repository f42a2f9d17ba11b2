"""What onnxruntime's SkipLayerNormFusion costs on CPU: why `EdgeModel` leaves it off.

    python benchmarks/ort_fusions.py                                  # HuBERT Base-shaped teacher + students
    python benchmarks/ort_fusions.py --teacher small:6x256x256 --out benchmarks/results/ort_fusions_small

The fusion turns each residual Add + LayerNormalization into one SkipLayerNormalization op.
Two measurements, both on 1 thread (and the op alone on 2):
1. the op alone: the same Add + LayerNormalization graph opened with the fusion (one
   SkipLayerNormalization node) and without it, at transformer shapes (frames x width);
2. whole deployable models (backbone + KWS head + SV head, random weights: speed does not
   depend on them), fp32 and int8, each file opened twice (with every rewrite, and with
   `edgedistill.runtime.model.SLOW_FUSIONS` left off) and timed side by side, interleaved, on 1 s
   and 4 s of audio; the two sessions' outputs are compared too.
Writes JSON and Markdown with the machine, versions and the command.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def add_layernorm_graph(frames: int, width: int) -> bytes:
    """An ONNX model: y = LayerNormalization(x + skip), the residual pattern the fusion rewrites."""
    from onnx import TensorProto, helper, numpy_helper

    x = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, frames, width]) for n in ("x", "skip")]
    inits = [numpy_helper.from_array(np.ones(width, np.float32), "g"), numpy_helper.from_array(np.zeros(width, np.float32), "b")]
    nodes = [helper.make_node("Add", ["x", "skip"], ["sum"]),
             helper.make_node("LayerNormalization", ["sum", "g", "b"], ["y"], axis=-1, epsilon=1e-5)]
    graph = helper.make_graph(nodes, "add_layernorm", x, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()


def time_op(frames: int, width: int, threads: int, runs: int) -> dict:
    """us per run of the Add + LayerNormalization graph with and without the fusion, interleaved."""
    from edgedistill.runtime.model import SLOW_FUSIONS, open_session

    model = add_layernorm_graph(frames, width)
    rng = np.random.default_rng(0)
    feed = {n: rng.standard_normal((1, frames, width)).astype(np.float32) for n in ("x", "skip")}
    sessions = {"fused": open_session(model, threads, disabled_fusions=()),
                "unfused": open_session(model, threads, disabled_fusions=SLOW_FUSIONS)}
    out = {k: s.run(None, feed)[0] for k, s in sessions.items()}
    times = {k: [] for k in sessions}
    for _ in range(runs):
        for k, s in sessions.items():
            t = time.perf_counter()
            s.run(None, feed)
            times[k].append(time.perf_counter() - t)
    us = {k: float(np.median(v) * 1e6) for k, v in times.items()}
    return {"frames": frames, "width": width, "threads": threads, "fused_us": us["fused"],
            "unfused_us": us["unfused"], "ratio": us["fused"] / us["unfused"],
            "max_abs_diff": float(np.abs(out["fused"] - out["unfused"]).max())}


def build_files(teacher_spec: str, students: list[str], tmp: Path, calibration: str) -> dict[str, Path]:
    """{'model mode': onnx file} for the teacher and each student preset, fp32 and int8."""
    import torch

    from edgedistill.deploy.onnx import export_onnx
    from edgedistill.deploy.quantize import quantize_model, scheme_with_calibration
    from edgedistill.models.builders import random_teacher
    from edgedistill.models.multitask import MultiTaskModel
    from edgedistill.models.student import StudentConfig, build_student

    torch.manual_seed(0)
    teacher = random_teacher(teacher_spec)
    files = {}
    for name in ["teacher", *students]:
        backbone = teacher if name == "teacher" else build_student(teacher, StudentConfig(preset=name))[0]
        model = MultiTaskModel(backbone, [f"kw{i}" for i in range(12)], 0).eval()
        fp32 = tmp / f"{name}.fp32.onnx"
        print(f"exporting {name}", flush=True)
        export_onnx(model, fp32)
        int8 = tmp / f"{name}.int8.onnx"
        quantize_model(fp32, int8, scheme_with_calibration("int8", calibration=calibration, calibration_clips=8))
        files.update({f"{name} fp32": fp32, f"{name} int8": int8})
    return files


def compare_outputs(path: Path, seconds: float) -> float:
    """Largest absolute difference between the outputs of `path` with and without the fusion."""
    from edgedistill.evaluation.latency import _audio
    from edgedistill.runtime.model import EdgeModel

    x = _audio(seconds)
    a = EdgeModel(path, disabled_fusions=()).session.run(None, {"waveform": x})
    b = EdgeModel(path).session.run(None, {"waveform": x})
    return max(float(np.abs(u - v).max()) for u, v in zip(a, b))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", default="builtin:hubert-base-random",
                   help="teacher shape (random weights): a builtin name or small:LAYERSxHIDDENxCNN (the recipes' "
                        "trained teacher, e.g. small:6x256x256 for Arabic Speech Commands)")
    p.add_argument("--students", default="distilhubert,edge,deep,wide")
    p.add_argument("--rounds", type=int, default=50, help="timed rounds of the whole models")
    p.add_argument("--op-runs", type=int, default=1000, help="timed runs of the op alone")
    p.add_argument("--calibration", default="embedded", help="calibration audio of the int8 files")
    p.add_argument("--out", default="benchmarks/results/ort_fusions")
    args = p.parse_args(argv)

    from edgedistill.reporting.machine import machine_info, write_report
    from edgedistill.evaluation.latency import time_onnx_side_by_side
    from edgedistill.runtime.model import SLOW_FUSIONS

    ops = [time_op(f, w, t, args.op_runs) for f, w in ((49, 256), (49, 768), (199, 256), (199, 768)) for t in (1, 2)]
    for r in ops:
        print(f"op alone {r['frames']}x{r['width']}, {r['threads']} thread(s): fused {r['fused_us']:.1f} us, "
              f"unfused {r['unfused_us']:.1f} us ({r['ratio']:.1f}x)", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        files = build_files(args.teacher, [s for s in args.students.split(",") if s], Path(tmp), args.calibration)
        paths = {**{f"{k} | every rewrite": f for k, f in files.items()},
                 **{f"{k} | fusion off": f for k, f in files.items()}}
        every = {k: () for k in paths if k.endswith("every rewrite")}
        for seconds in (1, 4):
            print(f"timing {len(paths)} sessions side by side on {seconds} s ({args.rounds} rounds)", flush=True)
            got = time_onnx_side_by_side(paths, seconds=seconds, threads=1, rounds=args.rounds,
                                         disabled_fusions=every)
            for name, f in files.items():
                on, off = got[f"{name} | every rewrite"][0], got[f"{name} | fusion off"][0]
                rows.append({"model": name, "audio_s": seconds, "every_rewrite_ms": on, "fusion_off_ms": off,
                             "speedup": on / off, "max_abs_diff": compare_outputs(f, seconds)})
                print(f"{name:<20} {seconds} s: {on:7.2f} ms -> {off:7.2f} ms ({on / off:.2f}x)", flush=True)
    command = "python " + " ".join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:]))
    info = machine_info()
    result = {"benchmark": "ort_fusions", "teacher": args.teacher, "disabled": list(SLOW_FUSIONS), "ops": ops,
              "models": rows, "rounds": args.rounds, "command": command, "machine": info,
              "date": time.strftime("%Y-%m-%d")}
    md = ["# onnxruntime's SkipLayerNormFusion on CPU: on (every rewrite) against off (`EdgeModel`'s default)", "",
          f"`{command}`", "",
          f"CPU {info['cpu']} ({info['cores']} cores, flags {', '.join(info['cpu_flags'])}); "
          f"{', '.join(f'{k} {v}' for k, v in info['versions'].items())}; {result['date']}. Graph optimisation "
          "level ALL in both; 'off' leaves out " + ", ".join(SLOW_FUSIONS) + ".", "",
          "## The op alone (Add + LayerNormalization, p50 over interleaved runs)", "",
          "| frames x width | threads | fused (SkipLayerNormalization) us | unfused (Add + LayerNormalization) us | "
          "fused / unfused | max abs diff |", "|---|---|---|---|---|---|"]
    md += [f"| {r['frames']} x {r['width']} | {r['threads']} | {r['fused_us']:.1f} | {r['unfused_us']:.1f} | "
           f"{r['ratio']:.1f}x | {r['max_abs_diff']:.1e} |" for r in ops]
    md += ["", f"## Whole models ({args.teacher} and its students, random weights, 1 thread, side by side, "
           f"{args.rounds} rounds)", "",
           "| model | audio s | every rewrite p50 ms | fusion off p50 ms | speed-up | max abs diff of outputs |",
           "|---|---|---|---|---|---|"]
    md += [f"| {r['model']} | {r['audio_s']:g} | {r['every_rewrite_ms']:.2f} | {r['fusion_off_ms']:.2f} | "
           f"{r['speedup']:.2f}x | {r['max_abs_diff']:.1e} |" for r in rows]
    write_report(args.out, result, md)
    return result


if __name__ == "__main__":
    main()
