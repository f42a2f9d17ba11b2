"""Figures people would rather look at than read: the size / latency trade-off, the SV DET
curve, the KWS confusion matrix and training curves (matplotlib, written as PNG)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_tradeoff(entries: list[dict], path: str | Path) -> Path:
    """KWS accuracy and SV EER against file size and against latency, one point per variant: a
    colour per variant, named in the legend (labels written next to close points overlap)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    colours = plt.get_cmap("tab10" if len(entries) <= 10 else "tab20")
    for ax, key, xlabel in ((axes[0], "file_bytes", "model file (MB)"), (axes[1], "latency_ms_p50", "latency p50 (ms)")):
        for i, e in enumerate(entries):
            x = e[key] / 1e6 if key == "file_bytes" else e[key]
            if e.get("kws_accuracy") is not None:
                ax.scatter(x, 100 * e["kws_accuracy"], marker="o", color=colours(i))
            if e.get("sv_eer") is not None:
                ax.scatter(x, 100 * (1 - e["sv_eer"]), marker="s", color=colours(i))
        from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

        ax.set_xscale("log")  # ticks at 1-2-5 steps: labels even when the points span less than a decade
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.margins(x=0.25, y=0.15)
        ax.set_xlabel(xlabel + " (log scale)")
        ax.set_ylabel("%")
        ax.grid(alpha=0.3)
    axes[0].set_title("Accuracy vs size")
    axes[1].set_title("Accuracy vs latency")
    axes[0].scatter([], [], marker="o", color="grey", label="KWS accuracy")
    axes[0].scatter([], [], marker="s", color="grey", label="SV 100 - EER")
    axes[0].legend(loc="best", fontsize=8)
    for i, e in enumerate(entries):
        axes[1].scatter([], [], marker="o", color=colours(i), label=e["variant"])
    axes[1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_det(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path) -> Path:
    """DET curves (miss vs false-alarm rate on normal-deviate axes) of several variants."""
    from scipy.stats import norm

    from edgedistill.metrics import eer, roc

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    ticks = np.array([0.001, 0.01, 0.05, 0.1, 0.2, 0.4])
    clip = lambda p: np.clip(p, 5e-4, 1 - 5e-4)  # noqa: E731
    for name, (scores, targets) in curves.items():
        far, frr, _ = roc(scores, targets)
        ax.plot(norm.ppf(clip(far)), norm.ppf(clip(frr)), label=f"{name} (EER {100 * eer(scores, targets)[0]:.1f}%)")
    ax.plot(norm.ppf(clip(ticks)), norm.ppf(clip(ticks)), "k:", lw=0.8)
    ax.set_xticks(norm.ppf(ticks), [f"{100 * t:g}" for t in ticks])
    ax.set_yticks(norm.ppf(ticks), [f"{100 * t:g}" for t in ticks])
    ax.set_xlim(norm.ppf(5e-4), norm.ppf(0.5))
    ax.set_ylim(norm.ppf(5e-4), norm.ppf(0.5))
    ax.set_xlabel("false-accept rate (%)")
    ax.set_ylabel("false-reject rate (%)")
    ax.set_title("Speaker verification: DET curve")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_stream_det(curves: dict[str, dict], path: str | Path) -> Path | None:
    """Continuous listening: false-reject rate against false alarms per hour (log x), one line
    per variant; `curves` maps a name to `stream_report(...)["curve"]`. None (and no file) where
    no variant has two points to draw (no event above any threshold): never an empty plot."""
    curves = {n: c for n, c in curves.items() if len(c["fa_per_hour"]) >= 2}
    if not curves:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, c in curves.items():
        fa = np.maximum(np.asarray(c["fa_per_hour"], float), 0.05)  # 0 FA/h drawn at the axis floor
        order = np.argsort(fa)
        ax.step(fa[order], 100 * np.asarray(c["frr"], float)[order], where="post", label=name, marker=".")
    for rate in (0.5, 1.0, 2.0):
        ax.axvline(rate, color="k", lw=0.6, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("false alarms per hour")
    ax.set_ylabel("false-reject rate (%)")
    ax.set_title("Keyword detection on a stream: misses vs false alarms")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_confusion(matrix, labels: list[str], path: str | Path, title: str = "KWS confusion") -> Path:
    """Row-normalised confusion matrix (true class per row)."""
    plt = _plt()
    m = np.asarray(matrix, dtype=float)
    m = m / np.maximum(m.sum(1, keepdims=True), 1)
    n = len(labels)
    fig, ax = plt.subplots(figsize=(max(4, 0.35 * n + 2), max(3.5, 0.35 * n + 1.5)))
    im = ax.imshow(m, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(n), labels, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_training(logs: dict[str, str | Path], path: str | Path) -> Path | None:
    """Training loss of each stage (from its train_log.jsonl) and validation metrics where logged.
    A stage with no logged loss gets no panel; None (and no file) where no stage has one. A log
    of a few points is drawn with markers (a single point would be an invisible line)."""
    stages = {}
    for name, file in logs.items():
        rows = [json.loads(x) for x in Path(file).read_text().splitlines() if x.strip()] if Path(file).exists() else []
        if any("loss" in r for r in rows):
            stages[name] = rows
    if not stages:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(stages), figsize=(4.2 * len(stages), 3.6), squeeze=False)
    for ax, (name, rows) in zip(axes[0], stages.items()):
        train = [r for r in rows if "loss" in r]
        ax.plot([r["step"] for r in train], [r["loss"] for r in train], ".-" if len(train) < 20 else "-",
                label="training loss")
        val = [r for r in rows if r.get("val_kws_accuracy") is not None]
        if val:
            ax2 = ax.twinx()
            ax2.plot([r["step"] for r in val], [100 * r["val_kws_accuracy"] for r in val], "o-", color="tab:green",
                     label="val KWS acc %")
            if val[0].get("val_sv_eer") is not None:
                ax2.plot([r["step"] for r in val], [100 * r["val_sv_eer"] for r in val], "s-", color="tab:red",
                         label="val EER %")
            ax2.set_ylabel("%")
            ax2.legend(loc="center right", fontsize=7)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
