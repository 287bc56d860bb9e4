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
