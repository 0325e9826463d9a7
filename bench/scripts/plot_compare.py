#!/usr/bin/env python3
"""Plots the latest matrix of `spindle-bench compare` (docs/benchmarks.md, "Side by side").

usage: plot_compare.py <compare.jsonl> <out.png>

Three panels against the publish rate, one line per server: deliveries/s, p99 end-to-end
latency, server CPU per delivery. Invalid runs (generator over its limit, anything lost) are
drawn as hollow markers. Exit code 3: matplotlib is not installed.
"""
import json
import sys

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("matplotlib is not installed (python3 -m pip install matplotlib)", file=sys.stderr)
    sys.exit(3)


def main(jsonl, png):
    with open(jsonl) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    if not rows:
        sys.exit(f"{jsonl} holds no runs")
    latest = rows[-1]["run_id"]
    rows = [r for r in rows if r["run_id"] == latest]
    servers = list(dict.fromkeys(r["server"] for r in rows))
    panels = [
        ("deliveries_per_s", "deliveries/s"),
        ("p99_ms", "p99 end-to-end latency (ms)"),
        ("cpu_us_per_delivery", "server CPU per delivery (µs)"),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(15, 4.5))
    for ax, (key, label) in zip(axes, panels):
        for server in servers:
            mine = sorted((r for r in rows if r["server"] == server), key=lambda r: r["rate"])
            xs = [r["rate"] for r in mine]
            ys = [r[key] for r in mine]
            (line,) = ax.plot(xs, ys, "-", label=server)
            for r in mine:
                ax.plot(
                    r["rate"],
                    r[key],
                    "o",
                    color=line.get_color(),
                    fillstyle="full" if r["valid"] else "none",
                )
        ax.set_xlabel("publishes/s")
        ax.set_ylabel(label)
        ax.set_xscale("log")
        ax.grid(True, alpha=0.3)
    axes[0].legend()
    first = rows[0]
    fig.suptitle(
        f"{first['subscribers']} subscribers, {first['size']} B, server on CPU "
        f"{first['server_cpus']}; hollow = invalid run. {first['versions']}",
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(png, dpi=110)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
