"""The PNG chart: Lockyard/raw ratios per operation per backend, and lock-cycle throughput.

Drawn with matplotlib's Agg backend (no display needed). The top panel shows each operation's
sequential p50 ratio per backend, with the goal as a dashed line; the bottom panel shows
uncontended and contended lock cycles per second for Lockyard and every peer, per backend, on
a log scale (peers span four orders of magnitude).
"""

from __future__ import annotations

from pathlib import Path

from lockyard_dev.bench.goals import RATIO_GOAL
from lockyard_dev.bench.results import LOCKYARD, Key, Results
from lockyard_dev.bench.stats import OPS_PER_S, P50_MS
from lockyard_dev.bench.store_ops import STORE_OP_NAMES


def write_chart(results: Results, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ratios = results.ratios(P50_MS)
    ratio_backends = list(dict.fromkeys(b for (b, s, _, m) in ratios if s == LOCKYARD))
    figures = results.aggregate()
    lock_rows: list[Key] = [
        key
        for key in figures
        if key[1] in ("lock", "peer") and key[3] == "lock_cycle" and key[4] == "uncontended"
    ]
    panels = (1 if ratio_backends else 0) + (1 if lock_rows else 0)
    if panels == 0:
        panels = 1
    fig, axes_array = plt.subplots(
        panels, 1, figsize=(11, 4.5 * panels + 0.5 * len(lock_rows) / 4), squeeze=False
    )
    axes = list(axes_array[:, 0])
    try:
        if ratio_backends:
            ax = axes.pop(0)
            ops = [
                op
                for op in STORE_OP_NAMES
                if any((b, LOCKYARD, op, "sequential") in ratios for b in ratio_backends)
            ]
            width = 0.8 / len(ratio_backends)
            for n, backend in enumerate(ratio_backends):
                values = [
                    ratios[(backend, LOCKYARD, op, "sequential")].median
                    if (backend, LOCKYARD, op, "sequential") in ratios
                    else 0.0
                    for op in ops
                ]
                positions = [
                    i + (n - (len(ratio_backends) - 1) / 2) * width for i in range(len(ops))
                ]
                ax.bar(positions, values, width, label=backend)
            ax.axhline(
                RATIO_GOAL, color="black", linestyle="--", linewidth=1, label=f"goal {RATIO_GOAL}x"
            )
            ax.axhline(1.0, color="grey", linewidth=0.5)
            ax.set_xticks(range(len(ops)))
            ax.set_xticklabels(ops, rotation=30, ha="right", fontsize=8)
            ax.set_ylabel("Lockyard p50 / raw p50")
            ax.set_title(
                "Store operations: Lockyard / raw driver at p50 (sequential, median of passes)"
            )
            ax.legend(fontsize=8)
        if lock_rows:
            ax = axes.pop(0)
            labels = [f"{key[0]}: {key[2]}" for key in lock_rows]
            uncontended = [figures[key][OPS_PER_S].median for key in lock_rows]
            contended = []
            for backend, section, subject, op, _ in lock_rows:
                metrics = figures.get((backend, section, subject, op, "contended"))
                contended.append(metrics[OPS_PER_S].median if metrics else 0.0)
            y = range(len(labels))
            ax.barh([i - 0.2 for i in y], uncontended, 0.4, label="uncontended (one task)")
            ax.barh([i + 0.2 for i in y], contended, 0.4, label="contended (all workers)")
            ax.set_yticks(list(y))
            ax.set_yticklabels(labels, fontsize=8)
            ax.invert_yaxis()
            ax.set_xscale("log")
            ax.set_xlabel("lock cycles per second (log scale)")
            ax.set_title("Lock cycles: Lockyard vs peer libraries")
            ax.legend(fontsize=8)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=90)
    finally:
        plt.close(fig)
    return path
