"""replay_timeline: simulate N days and run live_loop on each, in order. `make run` runs this.

A batch that fails (after its task retries) or is quarantined does not stop the timeline: the champion keeps
serving and the next batch goes on.
"""

from __future__ import annotations

import argparse
import time

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.live_loop import configured, live_loop
from liveloop.workspace import open_workspace


@flow(name="replay_timeline", log_prints=True)
def replay_timeline(params: str = "params.yaml", days: int | None = None, scenario: str | None = None,
                    drift_day: int | None = None, seed: int | None = None) -> list[dict]:
    from datetime import timedelta

    from liveloop.data.batches import batch_day, list_batches
    from liveloop.data.simulator import simulate

    logger = get_run_logger()
    cfg, ws = open_workspace(params)
    overrides = {"days": days, "scenario": scenario, "drift_day": drift_day}
    seen = list_batches(ws.accepted) + list_batches(ws.quarantine) + list_batches(ws.incoming)
    if seen:  # a later run continues the timeline instead of replaying days already taken in
        overrides["start_date"] = str(max(batch_day(p) for p in seen) + timedelta(days=1))
    sim = cfg.simulate.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    # a continued timeline is a new simulator run: its truth replaces the previous run's
    simulated = simulate(sim, cfg.seed if seed is None else seed, ws.incoming, ws.simulator_truth, overwrite=bool(seen))
    logger.info("simulated %d days (%s) into %s", len(simulated), sim.scenario, ws.incoming)
    batches = list_batches(ws.incoming)  # batches left over from an interrupted run go first
    results = []
    loop = configured(live_loop, cfg)
    for batch in batches:
        state = loop(str(batch), params=params, return_state=True)
        if state.is_completed():
            results.append(state.result())
        else:
            logger.error("batch %s failed: %s; champion unchanged, going on", batch.name, state.message)
            results.append({"batch": batch.name, "status": "failed", "error": state.message})
    table = summary_table(results, cfg.evaluate.ndcg_metric)
    create_markdown_artifact(markdown=table, key="timeline-summary", description="liveloop replay_timeline")
    print("\n" + table)
    return results


def summary_table(results: list[dict], metric: str) -> str:
    """One row per batch with the candidate's and champion's `metric` (evaluate.ndcg_metric, the gate's)."""
    rows = [f"| batch | status | drift | candidate | {metric} cand | {metric} champ | champion after |",
            "|---|---|---|---|---|---|---|"]
    for r in results:
        cand = (r.get("candidate_metrics") or {}).get(metric)
        champ = (r.get("champion_metrics") or {}).get(metric)
        rows.append(f"| {r.get('batch')} | {r.get('status')} | {r.get('drift', '-')} | {r.get('candidate', '-')} "
                    f"| {'-' if cand is None else f'{cand:.4f}'} | {'-' if champ is None else f'{champ:.4f}'} "
                    f"| {r.get('champion_after', '-')} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the whole liveloop loop over simulated days.")
    parser.add_argument("--params", default="params.yaml", help="params.yaml to use")
    parser.add_argument("--days", type=int, default=None, help="days to simulate (default: simulate.days)")
    parser.add_argument("--scenario", default=None, help="simulator scenario (default: simulate.scenario)")
    parser.add_argument("--drift-day", type=int, default=None, help="day index where the drift starts")
    args = parser.parse_args()
    start = time.time()
    results = replay_timeline(args.params, args.days, args.scenario, args.drift_day)
    failed = [r for r in results if r.get("status") == "failed"]
    print(f"\nliveloop: {len(results)} batches in {time.time() - start:.0f}s; "
          f"champion {results[-1].get('champion_after') if results else None}; {len(failed)} failed")
    print("Serve it: make serve   |   UI: make ui")


if __name__ == "__main__":
    main()
