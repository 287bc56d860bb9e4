"""Quality of the drift monitor over simulator seeds: detection of every drift scenario within one batch of its start,
and the false-alarm rate on stable batches.

For each seed and scenario the simulator writes `--days` batches with the drift starting on `--drift-day`; stable batches
with a full window, and the drift day and the day after, are checked against the `--window` batches before them
(the loop's reference window).
Detected = flagged on the drift day or the day after. False alarm = a stable-scenario batch flagged.

    .venv/bin/python bench/drift_quality.py --seeds 1 2 3 --out /tmp/liveloop-bench/drift_quality
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from liveloop.config import load_config
from liveloop.data.simulator import simulate
from liveloop.monitoring import check_drift

SCENARIOS = ("seasonal-shift", "new-category", "price-shock", "host-churn", "comment-shift")


def run(params: Path, seeds: list[int], days: int, drift_day: int, window: int, out: Path) -> dict:
    cfg = load_config(params)
    rows = []
    for seed in seeds:
        for scenario in ("stable",) + SCENARIOS:
            sim_cfg = cfg.simulate.model_copy(update={"days": days, "scenario": scenario, "drift_day": drift_day})
            batches = simulate(sim_cfg, seed, out / f"s{seed}" / scenario / "batches", out / f"s{seed}" / scenario / "truth",
                               overwrite=True)
            checked = range(window, days) if scenario == "stable" else (drift_day, drift_day + 1)
            for day in checked:
                if day >= days:
                    continue
                started = time.perf_counter()
                verdict = check_drift(batches[max(0, day - window):day], batches[day],
                                      out / f"s{seed}" / scenario / "reports" / batches[day].name, cfg.drift,
                                      model_cfg=cfg.model)
                rows.append({"seed": seed, "scenario": scenario, "day": day, "drift": verdict["drift"],
                             "reasons": verdict["reasons"], "seconds": round(time.perf_counter() - started, 1)})
                print(json.dumps(rows[-1]), flush=True)
    stable = [r for r in rows if r["scenario"] == "stable"]
    detected = {}
    for scenario in SCENARIOS:
        per_seed = [any(r["drift"] for r in rows if r["scenario"] == scenario and r["seed"] == s) for s in seeds]
        detected[scenario] = sum(per_seed) / len(per_seed)
    summary = {
        "seeds": seeds,
        "detected_within_one_batch": detected,
        "false_alarm_rate": sum(r["drift"] for r in stable) / len(stable),
        "stable_batches": len(stable),
        "median_check_seconds": sorted(r["seconds"] for r in rows)[len(rows) // 2],
        "rows": rows,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params.yaml (drift and simulate sections)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="simulator seeds")
    parser.add_argument("--days", type=int, default=7, help="simulated days per scenario")
    parser.add_argument("--drift-day", type=int, default=4, help="day index where the drift starts")
    parser.add_argument("--window", type=int, default=3, help="reference batches before each checked batch")
    parser.add_argument("--out", type=Path, default=Path("/tmp/liveloop-bench/drift_quality"), help="scratch folder")
    args = parser.parse_args()
    summary = run(args.params, args.seeds, args.days, args.drift_day, args.window, args.out)
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=2))


if __name__ == "__main__":
    main()
