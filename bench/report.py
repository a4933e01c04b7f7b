"""Turn a ``python -m bench`` run into a table, JSON and a PNG bar chart.

Every figure is the median over the repeats. Ratios are ringpool's advantage,
so ``> 1`` always means ringpool is better: ``ringpool / peer`` for tasks per
second, ``peer / ringpool`` for latencies.

``python -m bench.report [bench/results/peers.json]`` re-renders a saved run.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

# (column, workload, field, higher is better)
METRICS: list[tuple[str, str, str, bool]] = [
    ("W1 tasks/s", "w1", "tasks_per_s", True),
    ("W1 enqueue/s", "w1", "enqueue_per_s", True),
    ("L1 tasks/s", "l1", "tasks_per_s", True),
    ("L1m tasks/s", "l1m", "tasks_per_s", True),
    ("W2 p50 ms", "w2", "p50_ms", False),
    ("W2 p99 ms", "w2", "p99_ms", False),
    ("W3 tasks/s", "w3", "tasks_per_s", True),
    ("L3 tasks/s", "l3", "tasks_per_s", True),
    ("W4 wrong", "w4", "wrong_counts", False),
]
RATIO_COLUMNS = {"W1 tasks/s", "L1 tasks/s", "W2 p99 ms", "W3 tasks/s", "L3 tasks/s"}


def medians(record: dict[str, Any]) -> dict[str, float | None]:
    """Median of each metric over the repeats that produced it (None when none did)."""
    out: dict[str, float | None] = {}
    for column, workload, field, _ in METRICS:
        values = [r[workload][field] for r in record.get("repeats", [])
                  if workload in r and field in r[workload]]
        out[column] = statistics.median(values) if values else None
    return out


def ratio(ours: float | None, theirs: float | None, higher_better: bool) -> float | None:
    if ours is None or theirs is None or ours <= 0 or theirs <= 0:
        return None
    return ours / theirs if higher_better else theirs / ours


def summarize(run: dict[str, Any]) -> dict[str, Any]:
    systems = run.get("systems", {})
    table = {name: medians(record) for name, record in systems.items()}
    ours = table.get("ringpool", {})
    ratios: dict[str, dict[str, float | None]] = {}
    for name, row in table.items():
        ratios[name] = {
            column: ratio(ours.get(column), row[column], higher)
            for column, _, _, higher in METRICS if column in RATIO_COLUMNS
        }
    errors = {}
    for name, record in systems.items():
        problems = [record["error"]] if "error" in record else []
        for index, repeat in enumerate(record.get("repeats", [])):
            problems += [f"repeat {index + 1} {w}: {d['error']}" for w, d in repeat.items()
                         if "error" in d]
        if problems:
            errors[name] = problems
    return {"medians": table, "ratios_ringpool_advantage": ratios, "errors": errors,
            "targets": targets(table, run.get("floor"))}


def targets(table: dict[str, dict[str, float | None]], floor: dict[str, Any] | None
            ) -> dict[str, float | None]:
    """ringpool over the fastest peer (and Celery) on the loop workloads; W2 over peers
    and the floor (lower is better there)."""
    ours = table.get("ringpool", {})
    peers = [row for name, row in table.items() if name != "ringpool"]
    celery = table.get("celery", {})

    def fastest(column: str) -> float | None:
        return max((v for row in peers if (v := row.get(column))), default=None)

    def lowest(column: str) -> float | None:
        return min((v for row in peers if (v := row.get(column))), default=None)

    def share(a: float | None, b: float | None) -> float | None:
        return a / b if a and b else None

    return {
        "L1 / fastest peer L1": share(ours.get("L1 tasks/s"), fastest("L1 tasks/s")),
        "L1 / Celery L1": share(ours.get("L1 tasks/s"), celery.get("L1 tasks/s")),
        "L1m / fastest peer L1": share(ours.get("L1m tasks/s"), fastest("L1 tasks/s")),
        "L3 / fastest peer L3": share(ours.get("L3 tasks/s"), fastest("L3 tasks/s")),
        "W2 p99 / Celery p99": share(ours.get("W2 p99 ms"), celery.get("W2 p99 ms")),
        "W2 p99 / lowest peer p99": share(ours.get("W2 p99 ms"), lowest("W2 p99 ms")),
        "W2 p50 / floor p50": share(ours.get("W2 p50 ms"), (floor or {}).get("p50_ms")),
    }


def _fmt(value: float | None, column: str) -> str:
    if value is None:
        return "-"
    if "ms" in column:
        return f"{value:.2f}"
    if "wrong" in column:
        return f"{value:.0f}"
    return f"{value:,.0f}"


def format_table(run: dict[str, Any], summary: dict[str, Any]) -> str:
    columns = [c for c, *_ in METRICS]
    header = f"{'system':<10}" + "".join(
        f"{c:>14}" + (f"{'(x)':>7}" if c in RATIO_COLUMNS else "") for c in columns)
    lines = [header, "-" * len(header)]
    for name, row in summary["medians"].items():
        line = f"{name:<10}"
        for column in columns:
            line += f"{_fmt(row[column], column):>14}"
            if column in RATIO_COLUMNS:
                r = summary["ratios_ringpool_advantage"][name].get(column)
                line += f"{'' if r is None else f'{r:.2f}x':>7}"
        lines.append(line)
    sizes = run.get("sizes", {})
    lines.append(
        f"medians of {run.get('repeats')} repeat(s); (x) = ringpool's advantage (>1: ringpool "
        f"better); W1 {sizes.get('w1_tasks')} no-op over {sizes.get('w1_keys')} keys, "
        f"L1 {sizes.get('loop_tasks')} counted no-ops by single enqueues (L1m: ringpool's "
        "dispatch_many of 500), L3 the W3 tasks by single enqueues, "
        f"W2 {sizes.get('w2_trips')} round trips, W3 {sizes.get('w3_tasks')} x 10 ms, "
        f"W4 {sizes.get('w4_keys')} keys x {sizes.get('w4_per_key')} increments "
        "(wrong = returned counts that another task of the same key also returned); "
        "partial = cut at the per-workload deadline"
    )
    shown = [f"{name} {value:.2f}" for name, value in summary["targets"].items() if value]
    if shown:
        lines.append("targets: " + "; ".join(shown))
    for name, problems in summary["errors"].items():
        for problem in problems:
            lines.append(f"! {name}: {problem[:300]}")
    ring = run.get("ring")
    if ring:
        r = ring["ratio_to_uhashring"]
        lines.append(
            f"ring lookups: uncached {ring['lookups_per_s']['ringpool_uncached']:,.0f}/s "
            f"({r['ringpool_uncached']:.2f}x uhashring), cached "
            f"{ring['lookups_per_s']['ringpool_cached']:,.0f}/s ({r['ringpool_cached']:.2f}x), "
            f"uhashring {ring['lookups_per_s']['uhashring']:,.0f}/s"
        )
    floor = run.get("floor")
    ours = summary["medians"].get("ringpool", {})
    if floor and "p50_ms" in floor and ours.get("W2 p50 ms") and ours.get("W2 p99 ms"):
        lines.append(
            f"W2 floor (the same hops, none of ringpool's logic): p50 {floor['p50_ms']:.2f} ms "
            f"p99 {floor['p99_ms']:.2f} ms; ringpool's W2 is {ours['W2 p50 ms'] / floor['p50_ms']:.2f}x "
            f"it at p50, {ours['W2 p99 ms'] / floor['p99_ms']:.2f}x at p99"
        )
    return "\n".join(lines)


def plot(summary: dict[str, Any], path: Path) -> Path | None:
    """Bar charts of W1, L1, W2 p99 and W3 per system; None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    names = list(summary["medians"])
    panels = [("W1 throughput (tasks/s)", "W1 tasks/s"),
              ("L1 loop of single enqueues (tasks/s)", "L1 tasks/s"),
              ("W2 latency p99 (ms, lower is better)", "W2 p99 ms"),
              ("W3 10 ms IO tasks (tasks/s)", "W3 tasks/s")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    for ax, (title, column) in zip(axes, panels, strict=True):
        values = [summary["medians"][n][column] or 0.0 for n in names]
        colors = ["#d62728" if n == "ringpool" else "#7f7f7f" for n in names]
        bars = ax.bar(names, values, color=colors)
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        for bar, value in zip(bars, values, strict=True):
            ax.annotate(_fmt(value, column) if value else "n/a",
                        (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=7)
    fig.suptitle("ringpool vs peers: 2 worker processes each, one Redis, same run", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(run: dict[str, Any], results: Path) -> str:
    """Summarize ``run``; write ``peers.json`` (quick runs: ``peers-quick.json``) and the PNG."""
    summary = summarize(run)
    run = {**run, "summary": summary}
    stem = "peers-quick" if run.get("quick") else "peers"
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{stem}.json").write_text(json.dumps(run, indent=2, default=str) + "\n")
    text = format_table(run, summary)
    png = plot(summary, results / f"{stem}.png") if summary["medians"] else None
    text += f"\nwrote {results / f'{stem}.json'}" + (f" and {png}" if png else "")
    return text


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else Path(__file__).parent / "results" / "peers.json"
    run = json.loads(path.read_text())
    print(write(run, path.parent))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
