"""Headline experiment: does a warm-started daily update (with replay from the context window) keep up with a daily
full retrain from scratch, at a fraction of the compute, through a drift, and how do both compare with the baselines
refit every day and the simulator oracle?

The simulator writes `--days` daily batches with a drift from `--drift-day` on. Three strategies start from one shared
warm-up model trained from scratch on day 0 and then run prequentially (test-then-train): on each day t every
strategy's current model is evaluated on day t's batch first, then it learns from day t.
- stale: the warm-up model, never updated;
- full_retrain: `train(init_from="scratch")` every day on all accepted batches so far (train.context_days set beyond
  the run so nothing is cut off); the same `--full-steps` tower steps per day (default `--steps`: the tower is
  budgeted in steps, never epochs), so its extra compute is the growing data (examples, user histories, ranking
  groups) it rebuilds and refits the ranker on every day;
- incremental: the liveloop loop: yesterday's model warm-started on the new day only, `--steps` tower steps, with
  `train.replay_ratio` replay examples drawn from the earlier accepted batches within train.context_days.
The day's evaluation (`evaluate_model(..., baselines=True)` with the simulator truth) refits every baseline
(popularity, repeat_count, repeat_recency, item_knn, mf_als, frozen_encoder) on the history before day t and scores the
oracle; all are recorded next to the strategies. Every stage is the project's own function (`simulate`, `train`,
`evaluate_model`). Writes timeline.json, summary.md and a PNG plot.

    .venv/bin/python bench/timeline.py --out bench/_runs/timeline --plot docs/img/timeline.png
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from liveloop.config import Config, ConfigError, load_config
from liveloop.workspace import Workspace

STRATEGIES = ("stale", "full_retrain", "incremental")
LABELS = {
    "stale": "(a) stale (day-0 model)",
    "full_retrain": "(b) full retrain from scratch",
    "incremental": "(c) liveloop warm start + replay",
}
ORACLE = "oracle"
MODEL = "model"
RESULT_FILE = "timeline.json"


class TimelineError(ValueError):
    """Bad experiment arguments or an output folder that is not ours to overwrite."""


def with_train(cfg: Config, **updates) -> Config:
    """A copy of cfg with train.* fields replaced (validated, so a bad budget fails with its name)."""
    train = type(cfg.train).model_validate({**cfg.train.model_dump(), **updates})
    return cfg.model_copy(update={"train": train})


def run_workspace(out_dir: Path, cfg: Config) -> Workspace:
    """The run's workspace: accepted batches under out_dir, the text-vector cache shared with the evaluation
    (cfg.paths.state). train() reads only ws.accepted and ws.state and writes only its own out dir, so the
    strategies share it without mixing anything."""
    return Workspace(root=out_dir, state=Path(cfg.paths.state))


def prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse to mix runs: the folder must be new or empty, or a previous timeline run replaced on request."""
    if not out_dir.exists() or not any(out_dir.iterdir()):
        out_dir.mkdir(parents=True, exist_ok=True)
        return
    ours = (out_dir / RESULT_FILE).exists() or (out_dir / "data" / "simulator").exists()
    if not overwrite:
        raise TimelineError(f"{out_dir} is not empty; pass --overwrite to replace a previous timeline run")
    if not ours:
        raise TimelineError(f"{out_dir} is not empty and does not hold a timeline run; refusing to delete it")
    shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)


def evaluate_day(cfg: Config, model_dir: Path, history: list[Path], test_dir: Path, truth_dir: Path | None,
                 baselines: bool) -> dict:
    """{name: {ndcg@k, hr@k}} for the model ("model") and, when asked, every baseline and the oracle, plus setup."""
    from liveloop.evaluation import evaluate_model

    k = min(cfg.evaluate.ks)
    started = time.perf_counter()
    result = evaluate_model(cfg, model_dir, history, test_dir, truth_dir=truth_dir, baselines=baselines)
    scores = {name: {f"ndcg@{k}": m[f"ndcg@{k}"], f"hr@{k}": m[f"hr@{k}"]} for name, m in result["models"].items()}
    return {"scores": scores, "users": result["setup"]["users"], "candidates": result["setup"]["candidates"],
            "eval_seconds": round(time.perf_counter() - started, 2)}


def recovery_days(ndcg: list[float], oracle: list[float | None], days: list[int], drift_day: int,
                  tolerance: float) -> int | None:
    """Batches after the drift until NDCG/oracle NDCG is back to >= (1 - tolerance) x its pre-drift mean.

    Normalising by the oracle removes how hard each day is; 0 = no dip below the bar on the drift day itself,
    None = never back within the run (or no pre-drift days to compare with).
    """
    ratio = [n / o if o else n for n, o in zip(ndcg, oracle)]
    before = [r for r, d in zip(ratio, days) if d < drift_day]
    if not before:
        return None
    bar = (1 - tolerance) * float(np.mean(before))
    for r, d in zip(ratio, days):
        if d >= drift_day and r >= bar:
            return d - drift_day
    return None


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _ratio(a, b) -> float | None:
    return a / b if a is not None and b else None


def summarise(result: dict, tolerance: float) -> dict:
    """Mean NDCG per strategy and baseline, ratios vs (b), the best daily baseline and the oracle, compute,
    recovery after the drift."""
    k, drift = result["k"], result["drift_day"]
    days = result["eval_days"]
    key = f"ndcg@{k}"
    oracle = result["oracle"][key]
    # a stable world has no drift: "before" is the whole run, "after" and recovery do not apply
    post = lambda xs: None if drift is None else _mean([v for v, d in zip(xs, days) if d >= drift])
    pre = lambda xs: _mean([v for v, d in zip(xs, days) if drift is None or d < drift])
    baselines = {name: {f"mean_{key}": _mean(b[key]), f"pre_drift_{key}": pre(b[key]),
                        f"post_drift_{key}": post(b[key])} for name, b in result["baselines"].items()}
    # per day, the best baseline on that day (an optimistic reference: it is picked with the test labels)
    best_daily = [max(b[key][i] for b in result["baselines"].values()) for i in range(len(days))] \
        if result["baselines"] else []
    best_overall = max(baselines, key=lambda n: baselines[n][f"mean_{key}"]) if baselines else None
    out: dict = {
        "strategies": {},
        "baselines": baselines,
        f"best_daily_baseline_mean_{key}": _mean(best_daily),
        "best_baseline_overall": best_overall,
        f"oracle_mean_{key}": _mean(oracle),
        f"oracle_post_drift_{key}": post(oracle),
        "recovery_tolerance": tolerance,
    }
    for name in STRATEGIES:
        s = result["strategies"][name]
        mean = _mean(s[key])
        out["strategies"][name] = {
            f"mean_{key}": mean,
            f"mean_hr@{k}": _mean(s[f"hr@{k}"]),
            f"pre_drift_{key}": pre(s[key]),
            f"post_drift_{key}": post(s[key]),
            "recovery_days": None if drift is None else recovery_days(s[key], oracle, days, drift, tolerance),
            "vs_best_daily_baseline": _ratio(mean, out[f"best_daily_baseline_mean_{key}"]),
            "vs_best_baseline_overall": _ratio(mean, baselines[best_overall][f"mean_{key}"]) if best_overall else None,
            "vs_oracle": _ratio(mean, out[f"oracle_mean_{key}"]),
            "train_samples": s["train_samples"],
            "train_examples": s["train_examples"],
            "train_seconds": s["train_seconds"],
        }
    a, b, c = (out["strategies"][n] for n in STRATEGIES)
    mk, pk = f"mean_{key}", f"post_drift_{key}"
    out["quality_ratio_c_over_b"] = _ratio(c[mk], b[mk])
    out["sample_ratio_c_over_b"] = _ratio(c["train_samples"], b["train_samples"])
    out["example_ratio_c_over_b"] = _ratio(c["train_examples"], b["train_examples"])
    out["wall_ratio_c_over_b"] = _ratio(c["train_seconds"], b["train_seconds"])
    out["stale_post_drift_vs_full_retrain"] = a[pk] / b[pk] - 1 if a[pk] and b[pk] else None
    out["goals"] = {
        "c_within_1pct_of_b": out["quality_ratio_c_over_b"] is not None and out["quality_ratio_c_over_b"] >= 0.99,
        "c_wall_at_most_10pct_of_b": out["wall_ratio_c_over_b"] is not None and out["wall_ratio_c_over_b"] <= 0.10,
        "c_recovers_within_2_batches": None if drift is None else
        c["recovery_days"] is not None and c["recovery_days"] <= 2,
        "a_degrades_after_drift": None if drift is None else out["stale_post_drift_vs_full_retrain"] is not None
        and out["stale_post_drift_vs_full_retrain"] < 0,
        "c_beats_best_daily_baseline": (c["vs_best_daily_baseline"] or 0) > 1,
    }
    return out


def _f(x, fmt=".4f") -> str:
    return "n/a" if x is None else format(x, fmt)


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def markdown_summary(result: dict) -> str:
    """The summary tables for docs/benchmarks.md: strategies (with compute), then baselines and the oracle."""
    k, summary = result["k"], result["summary"]
    key = f"ndcg@{k}"
    rows = [f"| strategy | mean NDCG@{k} | mean HR@{k} | NDCG@{k} before / after drift | vs best daily baseline "
            "| vs oracle | recovery (batches) | tower samples | training examples | train wall |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for name in STRATEGIES:
        s = summary["strategies"][name]
        rec = "n/a" if s[f"post_drift_{key}"] is None else "never" if s["recovery_days"] is None else str(s["recovery_days"])
        rows.append(f"| {LABELS[name]} | **{_f(s[f'mean_{key}'])}** | {_f(s[f'mean_hr@{k}'])} | "
                    f"{_f(s[f'pre_drift_{key}'])} / {_f(s[f'post_drift_{key}'])} | {_pct(s['vs_best_daily_baseline'])} | "
                    f"{_pct(s['vs_oracle'])} | {rec} | {s['train_samples']:,} | {s['train_examples']:,} | "
                    f"{s['train_seconds']:.0f} s |")
    rows += ["", f"| reference (refit every day) | mean NDCG@{k} | NDCG@{k} before / after drift |", "|---|---|---|"]
    for name, b in sorted(summary["baselines"].items(), key=lambda kv: -(kv[1][f"mean_{key}"] or 0)):
        rows.append(f"| {name} | {_f(b[f'mean_{key}'])} | {_f(b[f'pre_drift_{key}'])} / {_f(b[f'post_drift_{key}'])} |")
    rows.append(f"| best baseline of each day (picked on the test labels) | {_f(summary[f'best_daily_baseline_mean_{key}'])} | |")
    oracle = result["oracle"][key]
    rows.append(f"| oracle (simulator truth) | {_f(summary[f'oracle_mean_{key}'])} | "
                f"{_f(_mean([o for o, d in zip(oracle, result['eval_days']) if result['drift_day'] is None or d < result['drift_day']]))} / "
                f"{_f(summary[f'oracle_post_drift_{key}'])} |")
    if not result.get("complete"):
        rows.append(f"\n**Partial run**: {len(result['eval_days'])} of {len(result['days']) - 1} days evaluated.")
    rows += [
        "",
        f"- (c)/(b) mean NDCG@{k}: **{_pct(summary['quality_ratio_c_over_b'])}** (goal ≥ 99%)",
        f"- (c)/(b) training compute: **{_pct(summary['wall_ratio_c_over_b'])}** of wall time, "
        f"{_pct(summary['sample_ratio_c_over_b'])} of tower samples, {_pct(summary['example_ratio_c_over_b'])} of "
        "training examples built (goal ≤ 10% wall)",
        f"- (a) after the drift vs (b): **{_pct(summary['stale_post_drift_vs_full_retrain'])}** NDCG@{k}",
        f"- best baseline on average: {summary['best_baseline_overall']}",
        "- goals met: " + ", ".join(f"{g} = {'n/a' if ok is None else 'yes' if ok else 'NO'}"
                                    for g, ok in summary["goals"].items()),
    ]
    return "\n".join(rows) + "\n"


def plot_timeline(result: dict, path: Path) -> Path:
    """NDCG@k per day: the strategies (bold), every baseline (thin), the oracle (dashed grey), the drift marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k, days = result["k"], result["eval_days"]
    key = f"ndcg@{k}"
    fig, ax = plt.subplots(figsize=(10, 5))
    for name, style in zip(STRATEGIES, ("-o", "-s", "-^")):
        ax.plot(days, result["strategies"][name][key], style, markersize=5, linewidth=2, label=LABELS[name])
    for name, b in sorted(result["baselines"].items()):
        ax.plot(days, b[key], ":", marker=".", linewidth=1, alpha=0.8, label=f"baseline {name}")
    if any(o is not None for o in result["oracle"][key]):
        ax.plot(days, [np.nan if o is None else o for o in result["oracle"][key]], "--", color="grey",
                linewidth=1.2, label="oracle (simulator truth)")
    if result["drift_day"] is not None:
        ax.axvline(result["drift_day"] - 0.5, color="red", linestyle=":", label=f"drift starts (day {result['drift_day']})")
    ax.set_xlabel("day (each model evaluated on the day before learning from it)")
    ax.set_ylabel(f"NDCG@{k}")
    total = len(result["days"]) - 1
    ax.set_xlim(0.5, total + 0.5)
    ax.set_title(f"Prequential NDCG@{k}: {result['config']['simulate']['scenario']}, "
                 f"{result['config']['simulate']['n_users']} users, {len(days)} of {total} days evaluated"
                 + ("" if result.get("complete") else " (partial)"), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_result(result: dict, out_dir: Path, tolerance: float, plot_path: Path | None) -> None:
    """timeline.json, summary.md and the plot for the days evaluated so far."""
    result["summary"] = summarise(result, tolerance)
    (out_dir / RESULT_FILE).write_text(json.dumps(result, indent=2, default=str))
    (out_dir / "summary.md").write_text(markdown_summary(result))
    if plot_path is not None:
        result["plot"] = str(plot_timeline(result, Path(plot_path)))


def _examples(model_dir: Path) -> int:
    """Training examples the run built (new + replay), from the model's state.json."""
    from liveloop.model.recommender import STATE_FILE

    state = json.loads((Path(model_dir) / STATE_FILE).read_text())
    return int(state.get("metrics", {}).get("examples", 0))


def run_timeline(cfg: Config, out_dir: Path, steps: int, full_steps: int | None = None, tolerance: float = 0.05,
                 plot_path: Path | None = None, overwrite: bool = False, log=print) -> dict:
    """Simulate, warm up, then test-then-train every strategy day by day; writes timeline.json, summary.md, a plot."""
    import torch

    from liveloop.data.simulator import resolve_drift_day, simulate
    from liveloop.training import train

    full_steps = steps if full_steps is None else full_steps
    if steps < 0:
        raise TimelineError(f"steps must be >= 0 (0: no tower steps, the ranker learns), got {steps}")
    if full_steps < 0:
        raise TimelineError(f"full_steps must be >= 0, got {full_steps}")
    if not 0 <= tolerance < 1:
        raise TimelineError(f"the recovery tolerance must be in [0, 1), got {tolerance}")
    if cfg.simulate.days < 3:
        raise TimelineError(f"simulate.days must be >= 3 (warm-up, one update, one evaluation), got {cfg.simulate.days}")
    drift_day = resolve_drift_day(cfg.simulate)  # None for the stable scenario: no drift to recover from
    if cfg.simulate.scenario != "stable" and (drift_day is None or not 2 <= drift_day < cfg.simulate.days):
        raise TimelineError(f"the drift day must fall in 2..{cfg.simulate.days - 1} so there are days before and "
                            f"after it to compare, got {drift_day} (scenario {cfg.simulate.scenario})")
    out_dir = Path(out_dir)
    prepare_out_dir(out_dir, overwrite)
    ws = run_workspace(out_dir, cfg)
    accepted, truth = ws.accepted, out_dir / "data" / "simulator"
    started = time.perf_counter()
    batches = simulate(cfg.simulate, cfg.seed, accepted, truth)
    log(f"simulated {len(batches)} days in {time.perf_counter() - started:.1f} s")
    k = min(cfg.evaluate.ks)
    key, hr = f"ndcg@{k}", f"hr@{k}"
    incremental_cfg = with_train(cfg, steps=steps)
    # (b) sees every accepted batch as training data: a context window past the run keeps nothing out
    full_cfg = with_train(cfg, steps=full_steps, context_days=max(cfg.train.context_days, cfg.simulate.days + 1))

    # warm-up: one model trained from scratch on day 0, shared by all strategies
    warm = train(with_train(cfg, steps=steps), ws, [batches[0]], "scratch", out_dir / "warmup" / "model")
    log(f"warm-up on {batches[0].name}: {warm.steps} steps, {warm.samples} samples, {warm.wall_seconds:.0f} s")
    current = {name: warm.model_dir for name in STRATEGIES}
    per_strategy = {name: {key: [], hr: [], "eval_seconds": [], "updates": [], "train_samples": 0,
                           "train_examples": 0, "train_seconds": 0.0} for name in STRATEGIES}
    baselines: dict[str, dict[str, list]] = {}
    oracle = {key: [], hr: []}
    eval_days, setup = [], []
    result = {
        "k": k,
        "drift_day": drift_day,
        "eval_days": eval_days,
        "days": [d.name for d in batches],
        "setup": setup,
        "warmup": {"steps": warm.steps, "samples": warm.samples, "examples": _examples(warm.model_dir),
                   "wall_seconds": round(warm.wall_seconds, 2)},
        "budget": {"incremental_steps": steps, "full_retrain_steps": full_steps, "batch_size": cfg.train.batch_size,
                   "replay_ratio": cfg.train.replay_ratio, "context_days": cfg.train.context_days,
                   "full_retrain_context_days": full_cfg.train.context_days},
        "strategies": per_strategy,
        "baselines": baselines,
        "oracle": oracle,
        "config": {"seed": cfg.seed, "simulate": cfg.simulate.model_dump(mode="json"),
                   "train": cfg.train.model_dump(mode="json"), "model": cfg.model.model_dump(mode="json"),
                   "evaluate_max_users": cfg.evaluate.max_users, "torch_threads": torch.get_num_threads()},
        "complete": False,
    }

    for t in range(1, len(batches)):
        day = batches[t]
        eval_days.append(t)
        seen: dict[str, dict] = {}  # model dir -> scores: day 1's strategies all hold the warm-up model
        for i, name in enumerate(STRATEGIES):  # test: every model on today's batch before it learns from it
            first = i == 0  # the first evaluation of the day also refits the baselines and scores the oracle
            model_key = str(current[name])
            if model_key not in seen:
                seen[model_key] = evaluate_day(cfg, current[name], batches[:t], day, truth if first else None, first)
            scores = seen[model_key]
            if first:
                for ref, m in scores["scores"].items():
                    if ref == MODEL:
                        continue
                    target = oracle if ref == ORACLE else baselines.setdefault(ref, {key: [], hr: []})
                    target[key].append(m[key])
                    target[hr].append(m[hr])
                setup.append({"day": day.name, "users": scores["users"], "candidates": scores["candidates"],
                              "eval_seconds_with_baselines": scores["eval_seconds"]})
            per_strategy[name][key].append(scores["scores"][MODEL][key])
            per_strategy[name][hr].append(scores["scores"][MODEL][hr])
            per_strategy[name]["eval_seconds"].append(scores["eval_seconds"])
        best = max(baselines, key=lambda n: baselines[n][key][-1]) if baselines else None
        log(f"day {t:2d} {day.name}: " + "  ".join(f"{name}={per_strategy[name][key][-1]:.4f}" for name in STRATEGIES)
            + (f"  best baseline {best}={baselines[best][key][-1]:.4f}" if best else "")
            + f"  oracle={oracle[key][-1] if oracle[key] else None}")
        result["wall_seconds"] = round(time.perf_counter() - started, 1)
        write_result(result, out_dir, tolerance, plot_path)  # partial results survive an interrupted run
        if t == len(batches) - 1:
            break  # nothing left to evaluate an update on
        runs = {
            "full_retrain": (full_cfg, batches[: t + 1], "scratch"),
            "incremental": (incremental_cfg, [day], str(current["incremental"])),
        }
        for name, (run_cfg, train_dirs, init_from) in runs.items():
            res = train(run_cfg, ws, train_dirs, init_from, out_dir / name / f"day{t:03d}")
            examples = _examples(res.model_dir)
            current[name] = res.model_dir
            s = per_strategy[name]
            s["train_samples"] += res.samples
            s["train_examples"] += examples
            s["train_seconds"] += res.wall_seconds
            s["updates"].append({"day": t, "steps": res.steps, "samples": res.samples, "examples": examples,
                                 "wall_seconds": round(res.wall_seconds, 2), "final_loss": res.final_loss,
                                 "batches": len(train_dirs), "init_from": res.init_from})
            log(f"    {name}: {res.steps} steps, {examples} examples from {len(train_dirs)} batch(es), "
                f"{res.wall_seconds:.0f} s")

    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    result["complete"] = True
    write_result(result, out_dir, tolerance, plot_path)
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params", type=Path, default=Path("params.yaml"), help="params.yaml to start from")
    p.add_argument("--out", type=Path, default=Path("bench/_runs/timeline"), help="run folder (data, models, JSON)")
    p.add_argument("--plot", type=Path, default=None, help="PNG to write (default: <out>/timeline.png)")
    p.add_argument("--overwrite", action="store_true", help="replace a previous timeline run in --out")
    p.add_argument("--days", type=int, default=30, help="simulated days (day 0 is the shared warm-up)")
    p.add_argument("--drift-day", type=int, default=15, help="day index where the drift starts")
    p.add_argument("--scenario", default="seasonal-shift", help="simulator drift scenario")
    p.add_argument("--users", type=int, default=None, help="simulate.n_users (default: params)")
    p.add_argument("--items", type=int, default=None, help="simulate.n_items (default: params)")
    p.add_argument("--rooms", type=int, default=None, help="simulate.rooms_per_day (default: params)")
    p.add_argument("--items-per-room", type=int, default=None, help="simulate.items_per_room (default: params)")
    p.add_argument("--steps", type=int, default=None,
                   help="train.steps: tower steps of the warm-up and of each (c) update (default: params)")
    p.add_argument("--full-steps", type=int, default=None,
                   help="tower steps of each (b) full retrain (default: --steps, the same budget per day)")
    p.add_argument("--batch-size", type=int, default=None, help="train.batch_size for every strategy (default: params)")
    p.add_argument("--max-users", type=int, default=None, help="evaluate.max_users per day (default: params)")
    p.add_argument("--recovery-tolerance", type=float, default=0.05,
                   help="recovered = NDCG/oracle back to >= (1 - this) x its pre-drift mean")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (1 is much faster on a CPU shared with other jobs; default: torch's)")
    p.add_argument("--seed", type=int, default=None, help="seed (default: params.yaml)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Run the experiment from command-line arguments; prints the summary table and returns the result."""
    args = parse_args(argv)
    overrides = {"simulate.days": args.days, "simulate.drift_day": args.drift_day, "simulate.scenario": args.scenario}
    for dotted, value in (("simulate.n_users", args.users), ("simulate.n_items", args.items),
                          ("simulate.rooms_per_day", args.rooms), ("simulate.items_per_room", args.items_per_room),
                          ("train.batch_size", args.batch_size), ("evaluate.max_users", args.max_users),
                          ("seed", args.seed)):
        if value is not None:
            overrides[dotted] = value
    cfg = load_config(args.params, overrides=overrides)
    if args.threads is not None:
        if args.threads < 1:
            raise TimelineError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    Workspace.from_config(cfg).apply_env()
    steps = args.steps if args.steps is not None else cfg.train.steps
    result = run_timeline(cfg, args.out, steps, args.full_steps, args.recovery_tolerance,
                          plot_path=args.plot or args.out / "timeline.png", overwrite=args.overwrite)
    print(markdown_summary(result))
    return result


if __name__ == "__main__":
    from liveloop.data.simulator import SimulationError
    from liveloop.evaluation.evaluate import EvaluationError
    from liveloop.training import TrainError

    try:
        main()
    except (TimelineError, ConfigError, SimulationError, TrainError, EvaluationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
