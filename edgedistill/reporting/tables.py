"""Markdown tables of measured results, from plain dicts (no config classes, no torch).

One variant table serves the run report, the model card and the benchmarks, so a column
means the same everywhere.
"""

from __future__ import annotations


def pct(x) -> str:
    """A fraction as a percentage for report tables ('-' when not measured)."""
    return f"{100 * x:.2f}%" if x is not None else "-"


def num(x) -> str:
    """A number with three decimals for report tables ('-' when not measured)."""
    return f"{x:.3f}" if x is not None else "-"


def _ms(x) -> str:
    return f"{x:.1f}" if x is not None else "-"


# column name -> how a variant entry (`recipes.benchmark` entries) is written in it
VARIANT_COLUMNS = {
    "params": lambda e: f"{e['params']:,}",
    "file MB": lambda e: f"{e['file_bytes'] / 1e6:.2f}",
    "KWS accuracy": lambda e: pct(e.get("kws_accuracy")),
    "SV EER": lambda e: pct(e.get("sv_eer")),
    "minDCF (0.01)": lambda e: num(e.get("sv_min_dcf")),
    "KWS retained": lambda e: pct(e.get("kws_retained")),
    "EER / teacher": lambda e: f"{e['eer_ratio']:.2f}" if e.get("eer_ratio") is not None else "-",
    "p50 ms": lambda e: _ms(e.get("latency_ms_p50")),
    "p90 ms": lambda e: _ms(e.get("latency_ms_p90")),
    "RTF": lambda e: f"{e['rtf']:.4f}" if e.get("rtf") is not None else "-",
}


def variant_table(entries: list[dict], columns: tuple[str, ...] | None = None) -> list[str]:
    """Markdown rows: one per variant entry ({"variant", "params", "file_bytes", "kws_accuracy",
    "sv_eer", "sv_min_dcf", "latency_ms_p50", ...}), the `columns` of `VARIANT_COLUMNS`
    (default: all, the retained columns only when some entry has them)."""
    if columns is None:
        retained = any("kws_retained" in e or "eer_ratio" in e for e in entries)
        columns = tuple(c for c in VARIANT_COLUMNS if retained or c not in ("KWS retained", "EER / teacher"))
    md = ["| variant | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for e in entries:
        md.append(f"| {e['variant']} | " + " | ".join(VARIANT_COLUMNS[c](e) for c in columns) + " |")
    return md


def stream_table(rows: dict[str, dict]) -> list[str]:
    """Markdown rows of streaming results ({variant: `evaluation.scores.evaluate_stream` report})."""
    md = ["| variant | FRR @ 0.5 FA/h | FRR @ 1 FA/h | FRR @ 2 FA/h | latency median / p90 s | ms / hop (p99) "
          "| core share | owner accepted | impostor accepted |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        gate = r.get("speaker_gate") or {}
        frr = {rate: pct(r[f"frr_at_{rate:g}_fa_per_hour"]) if measurable(r, rate) else "n/a" for rate in (0.5, 1, 2)}
        latency = (f"{r['latency_s_median']:.2f} / {r['latency_s_p90']:.2f}" if r["latency_s_median"] == r["latency_s_median"]
                   else "- (no hit)")
        md.append(f"| {name} | {frr[0.5]} | {frr[1]} | {frr[2]} | {latency} | "
                  f"{r['mean_ms']:.1f} ({r['p99_ms']:.1f}) | {pct(r['core_share'])} | "
                  f"{pct(gate.get('owner_acceptance'))} | {pct(gate.get('impostor_acceptance'))} |")
    return md


def detection_table(rows: dict[str, dict]) -> list[str]:
    """Markdown rows of misses at fixed false alarms per hour measured apart ({variant:
    `evaluate_stream` report with `detection`}), 95% intervals in brackets."""
    md = ["| variant | misses @ 0.5 FA/h | misses @ 1 FA/h | misses @ 2 FA/h | false alarms at the 1 FA/h threshold "
          "| misses @ 1 FA/h, per-keyword thresholds | latency median / p90 s | ms / hop (p99) | core share |",
          "|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        d = r["detection"]
        cells = []
        for rate in (0.5, 1, 2):
            a = d[f"at_{rate:g}_fa_per_hour"]
            cells.append(f"{pct(a['frr'])} [{pct(a['frr_ci95'][0])}, {pct(a['frr_ci95'][1])}]")
        one = d["at_1_fa_per_hour"]
        fa = (f"{one['false_alarms']} in {d['negative_hours']:.1f} h = {one['fa_per_hour']:.2f}/h "
              f"[{one['fa_per_hour_ci95'][0]:.2f}, {one['fa_per_hour_ci95'][1]:.2f}]")
        latency = (f"{one['latency_s_median']:.2f} / {one['latency_s_p90']:.2f}"
                   if one["latency_s_median"] == one["latency_s_median"] else "- (no hit)")
        per = d.get("at_1_fa_per_hour_per_keyword")
        per = (f"{pct(per['frr'])} [{pct(per['frr_ci95'][0])}, {pct(per['frr_ci95'][1])}] ({per['false_alarms']} FA)"
               if per else "-")
        md.append(f"| {name} | {' | '.join(cells)} | {fa} | {per} | {latency} | {r['mean_ms']:.1f} ({r['p99_ms']:.1f}) "
                  f"| {pct(r['core_share'])} |")
    return md


def detection_note(r: dict) -> str:
    """What the detection rows were measured on."""
    d = r["detection"]
    neg = d["negative_stream"]
    return (f"Misses at fixed false alarms per hour, measured apart: false alarms on {d['negative_hours']:.1f} h "
            f"of a second stream of the same split holding no target word ({neg['words']:,} words from "
            f"{neg['distinct_recordings']:,} recordings, each heard {neg['mean_recurrence']:.1f} times on average; "
            f"seed {neg['seed']}, background at {neg['snr_db']:g} dB), misses of the {d['occurrences']} target "
            "occurrences of the keyword stream at the threshold that keeps those false alarms at the rate (one for "
            "every keyword; 'per-keyword thresholds': each keyword its own, the rate shared equally, as "
            "`edgedistill calibrate` sets them on the device). "
            "95% intervals in brackets: Clopper-Pearson for misses, Poisson (Garwood) for false alarms.")


def measurable(r: dict, rate: float) -> bool:
    """Whether a stream of `r["seconds"]` can measure misses at `rate` false alarms per hour: one
    false alarm in it must not already exceed the rate (else the figure is misses at no false
    alarm at all, not at that rate)."""
    return r["seconds"] / 3600 >= 1 / rate


def stream_note(r: dict, split: str, data: str) -> str:
    """One sentence saying what the streaming rows were measured on."""
    gate = r.get("speaker_gate") or {}
    note = (f"Streaming: a {r['seconds'] / 60:.0f} min stream from split '{split}' of {data} (seed {r['seed']}, "
            f"background at {r['snr_db']:g} dB SNR), targets {', '.join(r['targets'])}: {r['occurrences']} "
            f"occurrences among the other words; detector hop {r['hop_ms']:.0f} ms, onnxruntime {r['threads']} "
            "thread(s). FRR at a fixed number of false alarms per hour; latency from the end of the word.")
    short = [rate for rate in (0.5, 1, 2) if not measurable(r, rate)]
    if short:
        note += (f" **This stream is too short for {', '.join(f'{x:g}' for x in short)} FA/h:** one false alarm in "
                 f"{r['seconds'] / 60:g} min is already {3600 / r['seconds']:.0f} FA/h, so those cells are n/a. "
                 f"{1 / min(short):g} h of stream is the least that measures {min(short):g} FA/h, and a figure "
                 "worth comparing needs about 10 h (stream.seconds).")
    if "owner_acceptance" in gate:
        note += (f" Speaker gating: each of the {r['enrolled_speakers']} speakers enrolled from a few non-target "
                 "clips left out of the stream; 'owner accepted' = keyword hits (at the 1 FA/h threshold) accepted "
                 "for their own speaker, 'impostor accepted' = accepted for another enrolled speaker, at the "
                 f"model's SV threshold {gate['sv_threshold']:.3f}.")
    return note


def stream_section(streams: dict | None, split: str, data: str, heading: str) -> list[str]:
    """Markdown of the streaming rows (run report and model card); nothing without streams."""
    if not streams:
        return []
    first = next(iter(streams.values()))
    md = ["", f"{heading} Continuous listening", "", stream_note(first, split, data), "", *stream_table(streams)]
    if all("detection" in r for r in streams.values()):
        md += ["", detection_note(first), "", *detection_table(streams)]
    return md
