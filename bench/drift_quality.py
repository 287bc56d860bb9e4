"""Quality of the drift monitor over simulator seeds: is every drift scenario flagged within one batch of its start, and
how often is a stable batch flagged (false alarm)?

Per seed: a stable run of `--stable-days` days, every day with a full reference window checked; and one run per drift
scenario with the drift starting on `--drift-day`, checking the day before it (stable: the simulator makes it
byte-identical to the stable run's day, so it is counted once more but is not new evidence), the drift day and the day
after. Reference = the `--window` batches before the checked one (the loop's `loop.reference_window`). Each batch's
text embeddings are computed once and cached, as in the loop. Signals are stored per check, so other thresholds can be
re-scored offline with `liveloop.monitoring.policy.decide`.

    .venv/bin/python bench/drift_quality.py --seeds 1 2 3 --confirm-seeds 4 5 --out /tmp/liveloop-bench/drift_quality
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from liveloop.config import load_config
from liveloop.data.simulator import simulate
from liveloop.monitoring import check_drift
from liveloop.monitoring.embeddings import TextEncoder

SCENARIOS = ("seasonal-shift", "new-category", "price-shock", "host-churn", "comment-shift")


def _checks(scenario: str, stable_days: int, drift_day: int, window: int) -> tuple[int, list[int]]:
    """(days to simulate, day indices to check) for one scenario."""
    if scenario == "stable":
        return stable_days, list(range(window, stable_days))
    return drift_day + 2, [drift_day - 1, drift_day, drift_day + 1]


def run_seed(params: Path, seed: int, stable_days: int, drift_day: int, window: int, out: Path,
             encoder: TextEncoder) -> list[dict]:
    cfg = load_config(params)
    rows = []
    for scenario in ("stable",) + SCENARIOS:
        days, checked = _checks(scenario, stable_days, drift_day, window)
        sim_cfg = cfg.simulate.model_copy(update={"days": days, "scenario": scenario,
                                                  "drift_day": None if scenario == "stable" else drift_day})
        base = out / f"s{seed}" / scenario
        batches = simulate(sim_cfg, seed, base / "batches", base / "truth", overwrite=True)
        for day in checked:
            wall, cpu = time.perf_counter(), time.process_time()
            verdict = check_drift(batches[day - window:day], batches[day], base / "reports" / batches[day].name,
                                  cfg.drift, model_cfg=cfg.model, cache_dir=out / f"s{seed}" / "embedding-cache",
                                  text_encoder=encoder)
            drifting = scenario != "stable" and day >= drift_day
            rows.append({"seed": seed, "scenario": scenario, "day": day, "drifting": drifting,
                         "drift": verdict["drift"], "reasons": verdict["reasons"], "signals": verdict["signals"],
                         "wall_s": round(time.perf_counter() - wall, 2), "cpu_s": round(time.process_time() - cpu, 2)})
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "signals"}), flush=True)
    return rows


def summarise(rows: list[dict], seeds: list[int], drift_day: int) -> dict:
    """Detection per scenario and seed (drift day or the day after), false-alarm rates, per-check time."""
    rows = [r for r in rows if r["seed"] in seeds]
    detection = {}
    for scenario in SCENARIOS:
        detection[scenario] = {
            str(s): any(r["drift"] for r in rows if r["scenario"] == scenario and r["seed"] == s and r["drifting"]
                        and r["day"] <= drift_day + 1)
            for s in seeds
        }
    stable_runs = [r for r in rows if r["scenario"] == "stable"]
    all_stable = [r for r in rows if not r["drifting"]]
    return {
        "seeds": seeds,
        "detected": detection,
        "all_detected": all(all(v.values()) for v in detection.values()),
        "on_drift_day": {sc: sum(r["drift"] for r in rows if r["scenario"] == sc and r["day"] == drift_day)
                         for sc in SCENARIOS},
        "false_alarms_stable_runs": f"{sum(r['drift'] for r in stable_runs)}/{len(stable_runs)}",
        "false_alarm_rate_stable_runs": sum(r["drift"] for r in stable_runs) / max(1, len(stable_runs)),
        "false_alarms_all_stable": f"{sum(r['drift'] for r in all_stable)}/{len(all_stable)}",
        "false_alarm_rate_all_stable": sum(r["drift"] for r in all_stable) / max(1, len(all_stable)),
        "false_alarm_reasons": [f"s{r['seed']} {r['scenario']} day {r['day']}: {r['reasons']}"
                                for r in stable_runs if r["drift"]],
        "median_check_wall_s": statistics.median(r["wall_s"] for r in rows),
        "median_check_cpu_s": statistics.median(r["cpu_s"] for r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params.yaml (simulate, model, drift)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="simulator seeds the policy was tuned on")
    parser.add_argument("--confirm-seeds", type=int, nargs="*", default=[4, 5], help="held-out seeds, reported apart")
    parser.add_argument("--stable-days", type=int, default=8, help="days of the stable run (checked from --window on)")
    parser.add_argument("--drift-day", type=int, default=4, help="day index where each drift scenario starts")
    parser.add_argument("--window", type=int, default=3, help="reference batches before each checked batch")
    parser.add_argument("--out", type=Path, default=Path("/tmp/liveloop-bench/drift_quality"), help="scratch folder")
    args = parser.parse_args()
    if args.drift_day < args.window + 1 or args.stable_days <= args.window:
        parser.error("need --drift-day >= --window + 1 and --stable-days > --window (a full window before each check)")
    cfg = load_config(args.params)
    encoder = TextEncoder(cfg.model.encoder, cfg.drift.embedding_max_length)  # loaded once for every check
    rows = []
    for seed in args.seeds + args.confirm_seeds:
        rows += run_seed(args.params, seed, args.stable_days, args.drift_day, args.window, args.out, encoder)
    summary = {"tuned": summarise(rows, args.seeds, args.drift_day)}
    if args.confirm_seeds:
        summary["confirm"] = summarise(rows, args.confirm_seeds, args.drift_day)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps({**summary, "rows": rows}, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
