# ruff: noqa: RUF001
"""Draw docs/benchmarks.png from one run's results (run in bench/.venv-mitm).

bench/.venv-mitm/bin/python bench/chart.py results.json docs/benchmarks.png
"""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main(source: str, target: str) -> None:
    with open(source) as fh:
        results = json.load(fh)
    names = [n for n in results["targets"] if n != "direct"]
    # The floor is a yardstick (bench/floor_proxy.py: no feature at all), not a rival.
    labels = [f"{n} (yardstick)" if n == "python-floor" else n for n in names]
    throughput = results.get("throughput", {})
    latency = results.get("latency", {})
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    ratios = [throughput.get(n, {}).get("ratio", 0) for n in names]
    colors = ["#4a7" if n.startswith("tower") else "#999" for n in names]
    bars = left.barh(labels, ratios, color=colors)
    for bar, name in zip(bars, names, strict=True):
        if name == "python-floor":
            bar.set(color="white", edgecolor="#999", hatch="//")
    left.bar_label(bars, labels=[f"{r:.3f}×" for r in ratios], padding=3, fontsize=8)
    left.axvline(0.25, color="#c33", linestyle="--", linewidth=1, label="target 0.25×")
    left.set_xlabel("throughput, × nginx-as-proxy (32 connections)")
    left.invert_yaxis()
    left.legend(loc="lower right", fontsize=8)
    added = [max(latency.get(n, {}).get("added_p50_ms", 0), 0) for n in names]
    added99 = [max(latency.get(n, {}).get("added_p99_ms", 0), 0) for n in names]
    y = range(len(names))
    right.barh([i - 0.2 for i in y], added, height=0.4, label="p50", color="#37a")
    right.barh([i + 0.2 for i in y], added99, height=0.4, label="p99", color="#9bd")
    right.set_yticks(list(y), labels)
    right.set_xscale("log")
    right.set_xlabel("added latency over direct upstream, ms (log)")
    right.invert_yaxis()
    right.legend(loc="upper right", fontsize=8)
    machine = results.get("machine", {})
    fig.suptitle(
        f"tower-proxy vs alternatives — medians of {results['settings']['rounds']} interleaved "
        f"rounds, {machine.get('cores', '?')} cores",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(target, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
