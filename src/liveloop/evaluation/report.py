"""Markdown tables for an evaluation or benchmark result (same dict the JSON holds)."""

from __future__ import annotations


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _table(rows: dict[str, dict], columns: list[str]) -> list[str]:
    lines = ["| model | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, metrics in rows.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(metrics.get(c)) for c in columns) + " |")
    return lines


def markdown_report(result: dict, title: str) -> str:
    """Main metrics table, slice table, the comparison to the best baseline and the setup."""
    models = result["models"]
    first = next(iter(models.values()))
    ks = sorted({int(key.split("@")[1]) for key in first if key.startswith("ndcg@") and "_" not in key})
    k_small, k_large = ks[0], ks[-1]
    main = [f"hr@{k_small}"] + [f"recall@{k}" for k in ks] + [f"ndcg@{k}" for k in ks]
    main += ["mrr", "auc", f"coverage@{k_small}"]
    slices = [f"ndcg@{k_small}_repeat", f"ndcg@{k_small}_new", f"recall@{k_large}_warm", f"recall@{k_large}_cold"]
    lines = [f"# {title}", ""] + _table(models, main) + ["", "Slices (targets the user had / had not wanted before; "
             "items seen / never seen in history = warm / cold-start):", ""] + _table(models, slices)
    comparison = result.get("comparison") or {}
    if comparison.get("best_baseline"):
        low, high = comparison["ratio_ci95"]
        lines += ["", f"Model / best baseline ({comparison['best_baseline']}) on {comparison['metric']}: "
                      f"{_fmt(comparison['ratio'])} (95% paired bootstrap over users: {low:.3f} - {high:.3f})"]
    if comparison.get("model_over_oracle") is not None:
        lines += ["", f"Model / oracle on ndcg@{k_small}: {comparison['model_over_oracle']:.3f}"]
    setup = result.get("setup", {})
    lines += ["", "Setup: " + ", ".join(f"{k}={v}" for k, v in setup.items() if not isinstance(v, dict))]
    return "\n".join(lines) + "\n"


def append_daily_metrics(path, day: str, row: dict) -> None:
    """Add (or, on a retried day, replace) one day's metrics in a CSV that dvc.yaml declares as a plot (x: day), so
    `dvc plots show` draws the loop's metrics per day. Columns are the union of all rows; the write is atomic."""
    import csv
    import io
    from pathlib import Path

    from liveloop.fsutil import atomic_write_bytes

    path = Path(path)
    bad = sorted(k for k, v in row.items() if not (v is None or isinstance(v, (int, float, str, bool))))
    if bad:
        raise ValueError(f"daily metrics must be scalars; {bad} are not")
    rows = []
    if path.exists():
        with open(path, newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if r["day"] != day]
    rows.append({"day": day, **row})
    rows.sort(key=lambda r: r["day"])
    columns = ["day"] + sorted({k for r in rows for k in r} - {"day"})
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
    atomic_write_bytes(path, out.getvalue().encode())
