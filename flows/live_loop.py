"""live_loop: one new batch through the whole loop.

validate (GX) -> version (DVC) -> drift check (Evidently) -> fine-tune when drift is found or the schedule says so
-> evaluate candidate vs champion on the batch's held-out tail and on a replay set -> promote or reject
-> package the champion for BentoML. Tasks receive the params path and folder paths, never DataFrames, so inputs
hash and results stay small. Each task calls the same function the `liveloop` CLI and dvc.yaml call.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from liveloop.workspace import open_workspace


@task
def validate_batch_task(params: str, batch_dir: str) -> dict:
    from liveloop.validation import gate_batch

    cfg, ws = open_workspace(params)
    result = gate_batch(Path(batch_dir), ws.accepted, ws.quarantine, cfg.validation, move=True)
    return {"accepted": result.accepted, "path": str(result.dest), "failures": list(result.report.failures)}


@task(retries=2, retry_delay_seconds=2)
def version_task(params: str, path: str) -> str:
    from liveloop.versioning import track

    _, ws = open_workspace(params)
    return track(ws, Path(path))


@task
def split_task(params: str, accepted_dir: str) -> dict:
    from liveloop.data.batches import split_by_time

    cfg, ws = open_workspace(params)
    day = Path(accepted_dir).name
    train_dir, holdout_dir = split_by_time(accepted_dir, cfg.loop.holdout_fraction,
                                           ws.splits / "train" / day, ws.splits / "holdout" / day)
    return {"train": str(train_dir), "holdout": str(holdout_dir)}


@task(retries=1, retry_delay_seconds=2)
def drift_task(params: str, reference_dirs: list[str], current_dir: str) -> dict:
    from liveloop.monitoring import check_drift
    from liveloop.registry import champion_dir

    cfg, ws = open_workspace(params)
    out = ws.reports / "drift" / Path(current_dir).name
    return check_drift([Path(d) for d in reference_dirs], Path(current_dir), out, cfg.drift, champion_dir(ws))


@task(retries=1, retry_delay_seconds=2)
def train_task(params: str, batch_dirs: list[str], init_from: str, out_dir: str) -> dict:
    """Retrying with the same out_dir resumes from the last checkpoint written there."""
    from liveloop.training import train

    cfg, ws = open_workspace(params)
    result = train(cfg, ws, [Path(d) for d in batch_dirs], init_from=init_from, out_dir=Path(out_dir))
    return {"model_dir": str(result.model_dir), "steps": result.steps, "samples": result.samples,
            "wall_seconds": result.wall_seconds, "final_loss": result.final_loss}


@task
def evaluate_task(params: str, model_dir: str, history_dirs: list[str], test_dir: str, name: str,
                  baselines: bool = False) -> dict:
    from liveloop.evaluation import evaluate_model

    cfg, ws = open_workspace(params)
    out = ws.reports / "evaluation" / name
    truth = ws.simulator_truth if ws.simulator_truth.exists() else None
    return evaluate_model(cfg, Path(model_dir), [Path(d) for d in history_dirs], Path(test_dir), truth_dir=truth,
                          out_json=out.with_suffix(".json"), out_md=out.with_suffix(".md"), baselines=baselines)


@task
def decide_task(params: str, candidate: dict, champion: dict | None) -> dict:
    from liveloop.evaluation import promotion_decision

    cfg, _ = open_workspace(params)
    promote, reasons = promotion_decision(candidate, champion, cfg.promotion)
    return {"promote": promote, "reasons": reasons}


@task
def register_task(params: str, model_dir: str, parent: str | None, data_versions: dict, metrics: dict,
                  decision: dict) -> str:
    from liveloop import registry

    cfg, ws = open_workspace(params)
    entry = registry.register(ws, Path(model_dir), parent=parent, data_versions=data_versions,
                              params=cfg.model_dump(mode="json"), metrics=metrics,
                              flow_run_id=str(flow_run.get_id() or ""))
    if decision["promote"]:
        registry.promote(ws, entry["version"], decision["reasons"])
    else:
        registry.reject(ws, entry["version"], decision["reasons"])
    return entry["version"]


@task(retries=2, retry_delay_seconds=2)
def package_task(params: str) -> str:
    from liveloop.serving import package_champion

    cfg, ws = open_workspace(params)
    return str(package_champion(cfg, ws))


def _metric_row(name: str, metrics: dict | None) -> str:
    def fmt(key: str) -> str:
        value = (metrics or {}).get(key)
        return "-" if value is None else f"{value:.4f}"

    return f"| {name} | {fmt('ndcg@10')} | {fmt('hr@10')} | {fmt('auc')} |"


def task_runner(cfg):
    """The task runner named in params (loop.task_runner): Prefect's thread pool, or a Dask cluster via prefect-dask."""
    if cfg.loop.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        if cfg.loop.dask_address:
            return DaskTaskRunner(address=cfg.loop.dask_address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": cfg.loop.dask_workers, "threads_per_worker": 1,
                                              "processes": True})
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=cfg.loop.threads)


@flow(name="live_loop", log_prints=True)
def live_loop(batch_dir: str | None = None, params: str = "params.yaml", force_train: bool = False) -> dict:
    """Take one batch (default: the oldest in data/incoming) through the loop; the champion changes only on promotion."""
    from liveloop import registry
    from liveloop.data.batches import list_batches

    logger = get_run_logger()
    cfg, ws = open_workspace(params)
    if batch_dir is None:
        pending = list_batches(ws.incoming)
        if not pending:
            logger.info("no batch waiting in %s", ws.incoming)
            return {"status": "idle"}
        batch_dir = str(pending[0])
    day = Path(batch_dir).name
    summary: dict = {"batch": day, "champion_before": registry.champion_version(ws)}

    gate = validate_batch_task(params, batch_dir)
    summary["validation"] = "accepted" if gate["accepted"] else f"quarantined ({len(gate['failures'])} failures)"
    if not gate["accepted"]:
        logger.warning("batch %s quarantined: %s", day, "; ".join(gate["failures"]))
        _publish(summary, gate, None, None, None)
        return {**summary, "status": "quarantined", "champion_after": summary["champion_before"]}

    accepted_dir = gate["path"]
    data_version = version_task(params, accepted_dir)
    history = [str(p) for p in list_batches(ws.accepted) if p.name < day]
    reference = history[-cfg.loop.reference_window:]

    drift = drift_task(params, reference, accepted_dir) if reference else {"drift": False, "reasons": ["no reference yet"], "signals": {}}
    champion = registry.champion_dir(ws)
    scheduled = cfg.loop.retrain_every > 0 and len(history) % cfg.loop.retrain_every == 0
    reasons = []
    if champion is None:
        reasons.append("no champion yet")
    if drift["drift"]:
        reasons.append("drift: " + "; ".join(drift["reasons"]))
    if scheduled:
        reasons.append(f"schedule (every {cfg.loop.retrain_every} batches)")
    if force_train:
        reasons.append("forced")
    summary["drift"] = drift["drift"]
    summary["train_reasons"] = reasons
    if not reasons:
        logger.info("batch %s: no drift and not scheduled; champion stays", day)
        _publish(summary, gate, drift, None, None)
        return {**summary, "status": "no-retrain", "champion_after": summary["champion_before"]}

    split = split_task(params, accepted_dir)
    init_from = "champion" if champion is not None else "scratch"
    trained = train_task(params, [split["train"]], init_from, str(ws.candidates / day))
    summary["train"] = trained

    # candidate and champion, on the new batch's held-out tail and on the replay set: independent, so submitted
    # together (threads by default, a Dask cluster with loop.task_runner: dask)
    eval_history = history + [split["train"]]
    jobs = {"candidate/new": evaluate_task.submit(params, trained["model_dir"], eval_history, split["holdout"],
                                                  f"{day}-candidate", baselines=True)}
    # replay set = the held-out tail of the oldest reference batch the champion was NOT itself trained on: on its own
    # training day the champion has seen the same users' earlier sessions, which would make any candidate look forgetful
    champion_days = set(registry.get_version(ws, registry.champion_version(ws))["data_versions"]) if champion else set()
    replay_day = next((Path(r).name for r in reference if Path(r).name not in champion_days), None)
    replay_holdout = ws.splits / "holdout" / replay_day if replay_day else None
    if champion is not None:
        jobs["champion/new"] = evaluate_task.submit(params, str(champion), eval_history, split["holdout"],
                                                    f"{day}-champion")
        if replay_holdout is not None and replay_holdout.exists():
            replay_hist = [h for h in history if Path(h).name < replay_day] + [str(ws.splits / "train" / replay_day)]
            for who, model_dir in (("candidate", trained["model_dir"]), ("champion", str(champion))):
                jobs[f"{who}/replay"] = evaluate_task.submit(params, model_dir, replay_hist, str(replay_holdout),
                                                             f"{day}-{who}-replay")
    evaluations = {key: job.result() for key, job in jobs.items()}
    candidate = {"new": evaluations["candidate/new"]["models"]["model"],
                 "baselines": evaluations["candidate/new"]["models"]}
    champ_metrics = None
    if champion is not None:
        champ_metrics = {"new": evaluations["champion/new"]["models"]["model"]}
        if "candidate/replay" in evaluations:
            candidate["replay"] = evaluations["candidate/replay"]["models"]["model"]
            champ_metrics["replay"] = evaluations["champion/replay"]["models"]["model"]

    decision = decide_task(params, candidate, champ_metrics)
    version = register_task(params, trained["model_dir"], registry.champion_version(ws),
                            {day: data_version}, {"candidate": candidate, "champion": champ_metrics}, decision)
    summary.update(candidate=version, decision=decision, candidate_metrics=candidate["new"],
                   champion_metrics=(champ_metrics or {}).get("new"))
    if decision["promote"]:
        version_task(params, str(ws.versions / version))
        if cfg.loop.package:
            summary["bento_model"] = package_task(params)
    summary["champion_after"] = registry.champion_version(ws)
    _publish(summary, gate, drift, candidate, champ_metrics)
    return {**summary, "status": "promoted" if decision["promote"] else "rejected"}


def _publish(summary: dict, gate: dict, drift: dict | None, candidate: dict | None, champion: dict | None) -> None:
    """A markdown artifact per batch: validation, drift and evaluation numbers, links to the HTML reports."""
    lines = [f"# Batch {summary['batch']}", "", f"**Validation:** {summary['validation']}", ""]
    lines += [f"- {f}" for f in gate["failures"]]
    if drift is not None:
        lines += ["", f"**Drift:** {'yes' if drift['drift'] else 'no'}", ""]
        lines += [f"- {r}" for r in drift.get("reasons", [])]
        if drift.get("report_html"):
            lines += ["", f"[drift report]({Path(drift['report_html']).resolve().as_uri()})"]
    if candidate is not None:
        lines += ["", "| model | NDCG@10 | HR@10 | AUC |", "|---|---|---|---|"]
        lines.append(_metric_row("candidate (new batch)", candidate.get("new")))
        lines.append(_metric_row("champion (new batch)", (champion or {}).get("new")))
        lines.append(_metric_row("candidate (replay)", candidate.get("replay")))
        lines.append(_metric_row("champion (replay)", (champion or {}).get("replay")))
        for name, m in candidate.get("baselines", {}).items():
            if name != "model":
                lines.append(_metric_row(f"baseline: {name}", m))
        decision = summary.get("decision", {})
        lines += ["", f"**Decision:** {'promote' if decision.get('promote') else 'reject'} "
                      f"({'; '.join(decision.get('reasons', []))})"]
    create_markdown_artifact(markdown="\n".join(lines), key=f"batch-{summary['batch']}".lower(),
                             description=f"liveloop batch {summary['batch']}")
