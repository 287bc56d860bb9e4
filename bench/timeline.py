"""Headline experiment: does incremental fine-tuning with replay keep up with a daily full retrain, at a fraction of
the compute, through a drift?

The simulator writes `--days` daily batches with a drift from `--drift-day` on. Three strategies start from one shared
warm-up model trained on day 0 and then run prequentially (test-then-train): on each day t every strategy's current
model is evaluated on day t's batch first, then it learns from day t.
- stale: the warm-up champion, never updated;
- full_retrain: from scratch every day on all history so far, `--full-epochs` epochs' worth of steps (so its compute
  grows with the history, like a real full retrain);
- incremental: the liveloop loop: yesterday's model fine-tuned on the new day only for a fixed `--incremental-steps`,
  with replay from its workspace's reservoir.
Every stage is the project's own function (`simulate`, `train`, `evaluate_model`); each strategy has its own Workspace
so replay reservoirs never mix. Writes timeline.json, summary.md and a PNG plot.

    .venv/bin/python bench/timeline.py --out bench/_runs/timeline --plot docs/img/timeline.png
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from liveloop.config import Config, ConfigError, load_config
from liveloop.workspace import Workspace

STRATEGIES = ("stale", "full_retrain", "incremental")
LABELS = {
    "stale": "(a) stale champion",
    "full_retrain": "(b) full retrain from scratch",
    "incremental": "(c) liveloop incremental + replay",
}
RESULT_FILE = "timeline.json"


class TimelineError(ValueError):
    """Bad experiment arguments or an output folder that is not ours to overwrite."""


def count_examples(batch_dir: Path) -> int:
    """Positive events (what training learns from) in one batch; sizes the full retrain's epoch budget."""
    from liveloop.evaluation.protocol import positive_events

    events = pd.read_parquet(Path(batch_dir) / "events.parquet", columns=["event_type", "quantity"])
    return len(positive_events(events))


def full_retrain_steps(n_examples: int, epochs: float, batch_size: int) -> int:
    """Steps for `epochs` passes over `n_examples` at `batch_size` (at least one)."""
    return max(1, math.ceil(epochs * n_examples / batch_size))


def with_train(cfg: Config, **updates) -> Config:
    """A copy of cfg with train.* fields replaced (validated, so a bad budget fails with its name)."""
    train = type(cfg.train).model_validate({**cfg.train.model_dump(), **updates})
    return cfg.model_copy(update={"train": train})


def strategy_workspace(out_dir: Path, name: str, accepted: Path) -> Workspace:
    """A workspace of its own per strategy (own replay reservoir and models) reading the shared accepted batches."""
    ws = Workspace(root=out_dir / name, state=out_dir / name / ".liveloop")
    ws.accepted.parent.mkdir(parents=True, exist_ok=True)
    ws.accepted.symlink_to(accepted.resolve(), target_is_directory=True)
    return ws


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


def evaluate_day(cfg: Config, model_dir: Path, history: list[Path], test_dir: Path, truth_dir: Path) -> dict:
    """NDCG@k / HR@k of one model on one day, with the simulator oracle's NDCG@k on the same users and candidates."""
    from liveloop.evaluation import evaluate_model

    k = min(cfg.evaluate.ks)
    started = time.perf_counter()
    result = evaluate_model(cfg, model_dir, history, test_dir, truth_dir=truth_dir, baselines=False)
    model, oracle = result["models"]["model"], result["models"].get("oracle", {})
    return {
        f"ndcg@{k}": model[f"ndcg@{k}"],
        f"hr@{k}": model[f"hr@{k}"],
        f"oracle_ndcg@{k}": oracle.get(f"ndcg@{k}"),
        "users": result["setup"]["users"],
        "candidates": result["setup"]["candidates"],
        "eval_seconds": round(time.perf_counter() - started, 2),
    }


def recovery_days(ndcg: list[float], oracle: list[float | None], days: list[int], drift_day: int, tolerance: float) -> int | None:
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


def summarise(result: dict, tolerance: float) -> dict:
    """Headline numbers: mean NDCG, quality and compute ratios (c)/(b), recovery after the drift, (a)'s degradation."""
    k, drift = result["k"], result["drift_day"]
    days = result["eval_days"]
    out: dict = {"strategies": {}}
    for name in STRATEGIES:
        s = result["strategies"][name]
        ndcg = s[f"ndcg@{k}"]
        post = [v for v, d in zip(ndcg, days) if d >= drift]
        pre = [v for v, d in zip(ndcg, days) if d < drift]
        out["strategies"][name] = {
            f"mean_ndcg@{k}": float(np.mean(ndcg)),
            f"mean_hr@{k}": float(np.mean(s[f"hr@{k}"])),
            f"pre_drift_ndcg@{k}": float(np.mean(pre)) if pre else None,
            f"post_drift_ndcg@{k}": float(np.mean(post)) if post else None,
            "recovery_days": recovery_days(ndcg, result["oracle_ndcg"], days, drift, tolerance),
            "train_samples": s["train_samples"],
            "train_seconds": s["train_seconds"],
        }
    a, b, c = (out["strategies"][n] for n in STRATEGIES)
    key, post_key = f"mean_ndcg@{k}", f"post_drift_ndcg@{k}"
    out["quality_ratio_c_over_b"] = c[key] / b[key] if b[key] else None
    out["sample_ratio_c_over_b"] = c["train_samples"] / b["train_samples"] if b["train_samples"] else None
    out["wall_ratio_c_over_b"] = c["train_seconds"] / b["train_seconds"] if b["train_seconds"] else None
    out["stale_post_drift_vs_full_retrain"] = a[post_key] / b[post_key] - 1 if a[post_key] and b[post_key] else None
    oracle_post = [o for o, d in zip(result["oracle_ndcg"], days) if d >= drift and o]
    out[f"oracle_mean_ndcg@{k}"] = float(np.mean([o for o in result["oracle_ndcg"] if o])) if any(result["oracle_ndcg"]) else None
    out[f"oracle_post_drift_ndcg@{k}"] = float(np.mean(oracle_post)) if oracle_post else None
    out["recovery_tolerance"] = tolerance
    out["goals"] = {
        "c_within_1pct_of_b": out["quality_ratio_c_over_b"] is not None and out["quality_ratio_c_over_b"] >= 0.99,
        "c_compute_at_most_10pct_of_b": out["sample_ratio_c_over_b"] is not None and out["sample_ratio_c_over_b"] <= 0.10,
        "c_recovers_within_2_batches": c["recovery_days"] is not None and c["recovery_days"] <= 2,
        "a_degrades_after_drift": out["stale_post_drift_vs_full_retrain"] is not None and out["stale_post_drift_vs_full_retrain"] < 0,
    }
    return out


def markdown_summary(result: dict) -> str:
    """The summary table for docs/benchmarks.md."""
    k, summary = result["k"], result["summary"]
    rows = [f"| strategy | mean NDCG@{k} | mean HR@{k} | NDCG@{k} before / after drift | recovery (batches) "
            "| train samples | train wall |", "|---|---|---|---|---|---|---|"]
    for name in STRATEGIES:
        s = summary["strategies"][name]
        pre, post = s[f"pre_drift_ndcg@{k}"], s[f"post_drift_ndcg@{k}"]
        rec = "n/a" if post is None else "never" if s["recovery_days"] is None else str(s["recovery_days"])
        rows.append(f"| {LABELS[name]} | {s[f'mean_ndcg@{k}']:.4f} | {s[f'mean_hr@{k}']:.4f} | "
                    f"{'n/a' if pre is None else f'{pre:.4f}'} / {'n/a' if post is None else f'{post:.4f}'} | {rec} | "
                    f"{s['train_samples']:,} | {s['train_seconds']:.0f} s |")

    def pct(x):
        return "n/a" if x is None else f"{100 * x:.1f}%"

    oracle = summary.get(f"oracle_mean_ndcg@{k}")
    if not result.get("complete"):
        rows.append(f"\n**Partial run**: {len(result['eval_days'])} of {len(result['days']) - 1} days evaluated.")
    rows += [
        "",
        f"- (c)/(b) mean NDCG@{k}: **{pct(summary['quality_ratio_c_over_b'])}** (goal ≥ 99%)",
        f"- (c)/(b) training compute: **{pct(summary['sample_ratio_c_over_b'])}** of samples, "
        f"{pct(summary['wall_ratio_c_over_b'])} of wall time (goal ≤ 10%)",
        f"- (a) after the drift vs (b): **{pct(summary['stale_post_drift_vs_full_retrain'])}** NDCG@{k}",
        f"- oracle (simulator truth) mean NDCG@{k}: {'n/a' if oracle is None else f'{oracle:.4f}'}",
        "- goals met: " + ", ".join(f"{g} = {'yes' if ok else 'NO'}" for g, ok in summary["goals"].items()),
    ]
    return "\n".join(rows) + "\n"


def plot_timeline(result: dict, path: Path) -> Path:
    """NDCG@k per day per strategy (and the oracle, dashed), the drift day marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k, days = result["k"], result["eval_days"]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for name, style in zip(STRATEGIES, ("-o", "-s", "-^")):
        ax.plot(days, result["strategies"][name][f"ndcg@{k}"], style, markersize=4, label=LABELS[name])
    if any(o is not None for o in result["oracle_ndcg"]):
        ax.plot(days, [np.nan if o is None else o for o in result["oracle_ndcg"]], "--", color="grey",
                linewidth=1, label="oracle (simulator truth)")
    ax.axvline(result["drift_day"] - 0.5, color="red", linestyle=":", label=f"drift starts (day {result['drift_day']})")
    ax.set_xlabel("day (each model evaluated on the day before learning from it)")
    ax.set_ylabel(f"NDCG@{k}")
    total = len(result["days"]) - 1
    ax.set_xlim(0.5, total + 0.5)
    ax.set_title(f"Prequential NDCG@{k}: {result['config']['simulate']['scenario']}, "
                 f"{result['config']['simulate']['n_users']} users, {len(days)} of {total} days evaluated"
                 + ("" if result.get("complete") else " (partial)"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
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


def run_timeline(cfg: Config, out_dir: Path, incremental_steps: int, full_epochs: float, tolerance: float = 0.05,
                 plot_path: Path | None = None, overwrite: bool = False, log=print) -> dict:
    """Simulate, warm up, then test-then-train every strategy day by day; writes timeline.json, summary.md, a plot."""
    import torch

    from liveloop.data.simulator import resolve_drift_day, simulate
    from liveloop.training import train

    if incremental_steps < 1:
        raise TimelineError(f"incremental_steps must be >= 1, got {incremental_steps}")
    if not full_epochs > 0:
        raise TimelineError(f"full_epochs must be > 0, got {full_epochs}")
    if not 0 <= tolerance < 1:
        raise TimelineError(f"the recovery tolerance must be in [0, 1), got {tolerance}")
    if cfg.simulate.days < 3:
        raise TimelineError(f"simulate.days must be >= 3 (warm-up, one update, one evaluation), got {cfg.simulate.days}")
    drift_day = resolve_drift_day(cfg.simulate)
    if drift_day is None or not 2 <= drift_day < cfg.simulate.days:
        raise TimelineError(f"the drift day must fall in 2..{cfg.simulate.days - 1} so there are days before and "
                            f"after it to compare, got {drift_day} (scenario {cfg.simulate.scenario})")
    out_dir = Path(out_dir)
    prepare_out_dir(out_dir, overwrite)
    accepted, truth = out_dir / "data" / "accepted", out_dir / "data" / "simulator"
    started = time.perf_counter()
    batches = simulate(cfg.simulate, cfg.seed, accepted, truth)
    log(f"simulated {len(batches)} days in {time.perf_counter() - started:.1f} s")
    workspaces = {name: strategy_workspace(out_dir, name, accepted) for name in STRATEGIES}
    k = min(cfg.evaluate.ks)
    incremental_cfg = with_train(cfg, steps=incremental_steps)
    full_cfg = with_train(cfg, replay_ratio=0.0, replay_size=0)  # sees all history: nothing to replay
    examples = [count_examples(d) for d in batches]

    # warm-up: one champion trained on day 0 shared by all; trained in the incremental workspace so its reservoir
    # starts with day 0 like the live loop's would
    warm_steps = full_retrain_steps(examples[0], full_epochs, cfg.train.batch_size)
    warm = train(with_train(cfg, steps=warm_steps), workspaces["incremental"], [batches[0]], "scratch",
                 out_dir / "warmup" / "model")
    log(f"warm-up on {batches[0].name}: {warm.steps} steps, {warm.samples} samples, {warm.wall_seconds:.0f} s")
    current = {name: warm.model_dir for name in STRATEGIES}
    per_strategy = {name: {f"ndcg@{k}": [], f"hr@{k}": [], "eval_seconds": [], "updates": [],
                           "train_samples": 0, "train_seconds": 0.0} for name in STRATEGIES}
    eval_days, oracle_ndcg, setup = [], [], []
    result = {
        "k": k,
        "drift_day": drift_day,
        "eval_days": eval_days,
        "days": [d.name for d in batches],
        "examples_per_day": examples,
        "oracle_ndcg": oracle_ndcg,
        "setup": setup,
        "warmup": {"steps": warm.steps, "samples": warm.samples, "wall_seconds": round(warm.wall_seconds, 2)},
        "budget": {"incremental_steps": incremental_steps, "full_epochs": full_epochs,
                   "batch_size": cfg.train.batch_size},
        "strategies": per_strategy,
        "config": {"seed": cfg.seed, "simulate": cfg.simulate.model_dump(mode="json"),
                   "train": cfg.train.model_dump(mode="json"), "model": cfg.model.model_dump(mode="json"),
                   "evaluate_max_users": cfg.evaluate.max_users, "torch_threads": torch.get_num_threads()},
        "complete": False,
    }

    for t in range(1, len(batches)):
        day = batches[t]
        eval_days.append(t)
        for name in STRATEGIES:  # test: every model on today's batch before it learns from it
            scores = evaluate_day(cfg, current[name], batches[:t], day, truth)
            for key in (f"ndcg@{k}", f"hr@{k}", "eval_seconds"):
                per_strategy[name][key].append(scores[key])
        oracle_ndcg.append(scores[f"oracle_ndcg@{k}"])
        setup.append({"day": day.name, "users": scores["users"], "candidates": scores["candidates"]})
        log(f"day {t:2d} {day.name}: " + "  ".join(f"{name}={per_strategy[name][f'ndcg@{k}'][-1]:.4f}"
                                                    for name in STRATEGIES) + f"  oracle={oracle_ndcg[-1]}")
        result["wall_seconds"] = round(time.perf_counter() - started, 1)
        write_result(result, out_dir, tolerance, plot_path)  # partial results survive an interrupted run
        if t == len(batches) - 1:
            break  # nothing left to evaluate an update on
        # train: each strategy learns from today
        runs = {
            "incremental": (incremental_cfg, [day], str(current["incremental"])),
            "full_retrain": (with_train(full_cfg, steps=full_retrain_steps(sum(examples[: t + 1]), full_epochs,
                                                                            cfg.train.batch_size)),
                             batches[: t + 1], "scratch"),
        }
        for name, (run_cfg, train_dirs, init_from) in runs.items():
            res = train(run_cfg, workspaces[name], train_dirs, init_from, workspaces[name].versions / f"day{t:03d}")
            current[name] = res.model_dir
            per_strategy[name]["train_samples"] += res.samples
            per_strategy[name]["train_seconds"] += res.wall_seconds
            per_strategy[name]["updates"].append({"day": t, "steps": res.steps, "samples": res.samples,
                                                  "wall_seconds": round(res.wall_seconds, 2),
                                                  "final_loss": res.final_loss, "batches": len(train_dirs)})
            log(f"    {name}: {res.steps} steps on {len(train_dirs)} batch(es), {res.wall_seconds:.0f} s")

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
    p.add_argument("--users", type=int, default=600, help="simulate.n_users")
    p.add_argument("--items", type=int, default=400, help="simulate.n_items")
    p.add_argument("--rooms", type=int, default=8, help="simulate.rooms_per_day")
    p.add_argument("--items-per-room", type=int, default=25, help="simulate.items_per_room")
    p.add_argument("--incremental-steps", type=int, default=30, help="(c): fixed optimiser steps per day")
    p.add_argument("--full-epochs", type=float, default=1.0, help="(b): epochs' worth of steps over all history per day")
    p.add_argument("--batch-size", type=int, default=32, help="train.batch_size for every strategy")
    p.add_argument("--ctr-batch-size", type=int, default=16, help="train.ctr_batch_size (0 = no CTR loss)")
    p.add_argument("--max-length", type=int, default=48, help="model.max_length (tokens per text)")
    p.add_argument("--max-users", type=int, default=None, help="evaluate.max_users per day (default: params.yaml)")
    p.add_argument("--recovery-tolerance", type=float, default=0.05,
                   help="recovered = NDCG/oracle back to >= (1 - this) x its pre-drift mean")
    p.add_argument("--warmup-steps", type=int, default=1, help="train.warmup_steps (small: (c) runs only a few steps)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (1 is much faster on a CPU shared with other jobs; default: torch's)")
    p.add_argument("--seed", type=int, default=None, help="seed (default: params.yaml)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Run the experiment from command-line arguments; prints the summary table and returns the result."""
    args = parse_args(argv)
    overrides = {
        "simulate.days": args.days, "simulate.drift_day": args.drift_day, "simulate.scenario": args.scenario,
        "simulate.n_users": args.users, "simulate.n_items": args.items, "simulate.rooms_per_day": args.rooms,
        "simulate.items_per_room": args.items_per_room, "train.batch_size": args.batch_size,
        "train.ctr_batch_size": args.ctr_batch_size, "model.max_length": args.max_length,
        "train.warmup_steps": args.warmup_steps,
    }
    if args.max_users is not None:
        overrides["evaluate.max_users"] = args.max_users
    if args.seed is not None:
        overrides["seed"] = args.seed
    cfg = load_config(args.params, overrides=overrides)
    if args.threads is not None:
        if args.threads < 1:
            raise TimelineError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    Workspace.from_config(cfg).apply_env()
    result = run_timeline(cfg, args.out, args.incremental_steps, args.full_epochs, args.recovery_tolerance,
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
