"""The loop's control plane: what happens to one new batch, as plain functions over small typed results.

validate -> version -> drift check -> plan (retrain or not, and why) -> split -> update -> evaluate candidate and
champion on the new holdout and a replay set -> decide (paired-bootstrap gate) -> commit (register, promote or reject,
version the model with DVC, package). `run_batch` runs that sequence over a `Steps` object: `LocalSteps` calls the
stage functions directly (`liveloop loop BATCH`), flows/live_loop.py passes Prefect tasks (retries, a task runner for
the evaluations, a markdown artifact). The decisions (`plan_retrain`, `choose_replay_day`, `assemble_metrics`,
`decide`) are pure, so they are unit-tested without Prefect, DVC or a model.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from liveloop.config import Config, DriftConfig
from liveloop.workspace import Workspace

log = logging.getLogger(__name__)

NEW, REPLAY = "new", "replay"  # evaluation sets: the new batch's held-out tail, and an earlier day's (forgetting)
CANDIDATE, CHAMPION = "candidate", "champion"


class LoopError(RuntimeError):
    """The loop cannot go on with this batch (inconsistent evaluations, nothing to take in)."""


# ------------------------------------------------------------------------------------------------ typed results
@dataclass(frozen=True)
class GateResult:
    """The validation gate's outcome: where the batch went and what failed."""

    accepted: bool
    path: Path
    failures: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DriftVerdict:
    drift: bool
    reasons: list[str]
    signals: dict = field(default_factory=dict)
    report_html: str | None = None

    @classmethod
    def from_check(cls, verdict: dict) -> "DriftVerdict":
        return cls(bool(verdict["drift"]), list(verdict["reasons"]), verdict.get("signals") or {},
                   verdict.get("report_html"))

    @classmethod
    def no_reference(cls) -> "DriftVerdict":
        return cls(False, ["no reference yet"])


@dataclass(frozen=True)
class RetrainPlan:
    """Whether to update the model on this batch, why, and from what."""

    train: bool
    reasons: list[str]
    init_from: str  # "champion" | "scratch"


@dataclass(frozen=True)
class EvalJob:
    """One evaluation: `model_dir` ranks the users of `test` given the batches in `history`."""

    key: str  # "<candidate|champion>/<new|replay>"
    model_dir: Path
    history: list[Path]
    test: Path
    name: str  # report name under reports/evaluation/
    baselines: bool = False


@dataclass(frozen=True)
class Evaluation:
    """Metrics per evaluation set for both models, and the paired per-user values the gate resamples."""

    candidate: dict  # {set: {metric: value}}
    champion: dict | None  # same, None before the first champion
    per_user: dict  # {set: {metric: (candidate values, champion values)}}
    baselines: dict = field(default_factory=dict)  # {name: {metric: value}} on the new holdout, when computed


@dataclass(frozen=True)
class Decision:
    """What the gate decided and everything `commit` needs to record it."""

    promote: bool
    reasons: list[str]
    checks: list[dict]
    model_dir: Path
    parent: str | None
    data_versions: dict[str, str]
    metrics: dict


@dataclass(frozen=True)
class CommitResult:
    version: str
    champion: str | None
    model_data_version: str | None = None
    bento: dict | None = None


# ---------------------------------------------------------------------------------------------------- decisions
def reference_window(history: list[Path], window: int) -> list[Path]:
    """The accepted batches right before the new one that the drift check compares against."""
    return list(history)[-window:] if window > 0 else []


def drift_config_for(cfg: DriftConfig, reference_batches: int, window: int) -> DriftConfig:
    """The drift settings for a reference of `reference_batches` batches when the policy was set for `window`.

    On the first days the reference is shorter than the window, so what rotates from day to day (the day's hosts,
    and the category and price mix of its rooms) looks new or shifted far more often: with the full-window policy
    6 of 20 stable one- and two-day references raised a false alarm (docs/reliability.md). There, a new-value share p
    that the window tolerates becomes 1 - (1 - p) ** (window / batches) (a value missed by each of fewer days: a
    one-day reference tolerates 0.3 -> 0.66 unseen hosts, 0.05 -> 0.14 unseen categories), and the column distances
    of `thresholds.rotating_columns` are scaled by sqrt(window / batches). Other signals keep their thresholds.
    """
    if reference_batches <= 0 or reference_batches >= window:
        return cfg
    power = window / reference_batches
    t = cfg.thresholds
    shares = {k: v if v >= 1 else 1.0 - (1.0 - v) ** power for k, v in t.new_value_share.items()}
    columns = {k: v * math.sqrt(power) if k in t.rotating_columns else v for k, v in t.column_drift.items()}
    return cfg.model_copy(update={"thresholds": t.model_copy(update={"new_value_share": shares,
                                                                      "column_drift": columns})})


def plan_retrain(cfg: Config, *, accepted_before: int, has_champion: bool, drift: DriftVerdict,
                 force: bool = False) -> RetrainPlan:
    """Retrain when there is no champion, drift was found, the schedule says so (every loop.retrain_every accepted
    batches) or it is forced; warm-start from the champion when there is one."""
    every = cfg.loop.retrain_every
    reasons = []
    if not has_champion:
        reasons.append("no champion yet")
    if drift.drift:
        reasons.append("drift: " + "; ".join(drift.reasons))
    if every > 0 and accepted_before % every == 0:
        reasons.append(f"schedule (every {every} batches)")
    if force:
        reasons.append("forced")
    return RetrainPlan(bool(reasons), reasons, "champion" if has_champion else "scratch")


def choose_replay_day(reference_days: list[str], champion_days, held_out_days) -> str | None:
    """The oldest reference day that has a held-out tail and that the champion was NOT itself trained on: on its own
    training day the champion has seen the same users' earlier sessions, which would make any candidate look
    forgetful. None when no day qualifies (the replay set is then not compared)."""
    champion_days, held_out_days = set(champion_days), set(held_out_days)
    return next((d for d in reference_days if d not in champion_days and d in held_out_days), None)


def evaluation_jobs(day: str, candidate_dir: Path, champion_dir: Path | None, history: list[Path],
                    train_split: Path, holdout: Path, replay: tuple[list[Path], Path] | None,
                    baselines: bool = False) -> list[EvalJob]:
    """The evaluations that decide: candidate (and champion) on the new holdout, both on the replay set."""
    new_history = list(history) + [train_split]
    jobs = [EvalJob(f"{CANDIDATE}/{NEW}", candidate_dir, new_history, holdout, f"{day}-candidate", baselines)]
    if champion_dir is None:
        return jobs
    jobs.append(EvalJob(f"{CHAMPION}/{NEW}", champion_dir, new_history, holdout, f"{day}-champion"))
    if replay is not None:
        replay_history, replay_holdout = replay
        for who, model_dir in ((CANDIDATE, candidate_dir), (CHAMPION, champion_dir)):
            jobs.append(EvalJob(f"{who}/{REPLAY}", model_dir, list(replay_history), replay_holdout,
                                f"{day}-{who}-replay"))
    return jobs


def assemble_metrics(evaluations: dict[str, dict], per_user_metric: str) -> Evaluation:
    """Evaluation results keyed "<candidate|champion>/<set>" -> the metrics per set and the paired per-user values.

    The two models of one set must have been scored on the same users (same test batch, same user count)."""
    if f"{CANDIDATE}/{NEW}" not in evaluations:
        raise LoopError(f"no candidate evaluation on the new holdout among {sorted(evaluations)}")
    metrics: dict[str, dict] = {CANDIDATE: {}, CHAMPION: {}}
    per_user: dict[str, dict] = {}
    for key, result in evaluations.items():
        who, set_name = key.split("/")
        metrics[who][set_name] = result["models"]["model"]
    for set_name in metrics[CHAMPION]:
        if set_name not in metrics[CANDIDATE]:
            continue
        cand, champ = evaluations[f"{CANDIDATE}/{set_name}"], evaluations[f"{CHAMPION}/{set_name}"]
        same = {k: cand["setup"].get(k) for k in ("test_dir", "users")} == \
               {k: champ["setup"].get(k) for k in ("test_dir", "users")}
        if not same:
            raise LoopError(f"candidate and champion on {set_name!r} were not scored on the same users "
                            f"({cand['setup'].get('test_dir')}: {cand['setup'].get('users')} vs "
                            f"{champ['setup'].get('test_dir')}: {champ['setup'].get('users')})")
        cand_users, champ_users = (cand.get("per_user") or {}).get("model"), (champ.get("per_user") or {}).get("model")
        if cand_users is not None and champ_users is not None:
            per_user[set_name] = {per_user_metric: (list(cand_users), list(champ_users))}
    baselines = {n: m for n, m in evaluations[f"{CANDIDATE}/{NEW}"]["models"].items() if n != "model"}
    return Evaluation(metrics[CANDIDATE], metrics[CHAMPION] or None, per_user, baselines)


def decide(evaluation: Evaluation, cfg: Config, *, model_dir: Path, parent: str | None,
           data_versions: dict[str, str]) -> Decision:
    """The promotion gate over one evaluation (liveloop.evaluation.promotion.gate), plus what commit records."""
    from liveloop.evaluation.promotion import gate

    promote, checks = gate(evaluation.candidate, evaluation.champion, cfg.promotion, evaluation.per_user, cfg.seed)
    # the baselines scored beside the candidate on the new holdout go into the registry with it (loop.baselines)
    metrics = {CANDIDATE: evaluation.candidate, CHAMPION: evaluation.champion, "baselines": evaluation.baselines}
    return Decision(promote, [c.reason for c in checks], [c.as_dict() for c in checks], Path(model_dir), parent,
                    dict(data_versions), metrics)


# ---------------------------------------------------------------------------------------------- side effects
def run_evaluation(cfg: Config, ws: Workspace, job: EvalJob) -> dict:
    """evaluate_model for one job; reports land in reports/evaluation/<name>.json/.md."""
    from liveloop.evaluation import evaluate_model

    out = ws.reports / "evaluation" / job.name
    truth = ws.simulator_truth if job.baselines and ws.simulator_truth.exists() else None
    return evaluate_model(cfg, job.model_dir, job.history, job.test, truth_dir=truth, out_json=out.with_suffix(".json"),
                          out_md=out.with_suffix(".md"), baselines=job.baselines)


def commit(cfg: Config, ws: Workspace, decision: Decision, flow_run_id: str | None = None,
           dvc_add: bool = True) -> CommitResult:
    """Register the candidate with its lineage, promote or reject it, and on promotion version the model with DVC
    (`dvc add` + push, or only its md5 without dvc_add) and package it. Safe to retry: registering the same candidate
    again returns the existing version."""
    from liveloop import registry

    entry = registry.register(ws, decision.model_dir, parent=decision.parent, data_versions=decision.data_versions,
                              params=cfg.model_dump(mode="json"), metrics=decision.metrics, gate=decision.checks,
                              flow_run_id=flow_run_id)
    version = entry["version"]
    if not decision.promote:
        registry.reject(ws, version, decision.reasons)
        return CommitResult(version, registry.champion_version(ws))
    from liveloop.versioning import version_of

    registry.promote(ws, version, decision.reasons)
    model_md5 = version_of(ws, ws.versions / version, dvc_add)
    bento = None
    if cfg.loop.package:
        from liveloop.serving import package_champion

        bento = package_champion(cfg, ws)
    return CommitResult(version, registry.champion_version(ws), model_md5, bento)


# ------------------------------------------------------------------------------------------------ the sequence
class LocalSteps:
    """The loop's side effects called directly: what `liveloop loop` runs. Flows override these with Prefect tasks.
    dvc_add False records data and model versions as md5s without `dvc add` (the loop inside `dvc repro`)."""

    def __init__(self, cfg: Config, ws: Workspace, dvc_add: bool = True):
        self.cfg, self.ws, self.dvc_add = cfg, ws, dvc_add

    def validate(self, batch_dir: Path) -> GateResult:
        from liveloop.validation import gate_batch

        result = gate_batch(Path(batch_dir), self.ws.accepted, self.ws.quarantine, self.cfg.validation, move=True)
        return GateResult(result.accepted, Path(result.dest), list(result.report.failures))

    def version(self, path: Path) -> str:
        from liveloop.versioning import version_of

        return version_of(self.ws, Path(path), self.dvc_add)

    def drift(self, reference: list[Path], current: Path) -> DriftVerdict:
        from liveloop.monitoring import check_drift
        from liveloop.registry import champion_dir

        drift_cfg = drift_config_for(self.cfg.drift, len(reference), self.cfg.loop.reference_window)
        out = self.ws.reports / "drift" / Path(current).name
        return DriftVerdict.from_check(check_drift(list(reference), Path(current), out, drift_cfg,
                                                   champion_dir(self.ws), model_cfg=self.cfg.model,
                                                   evaluate_cfg=self.cfg.evaluate))

    def split(self, accepted_dir: Path) -> tuple[Path, Path]:
        from liveloop.data.batches import split_by_time

        day = Path(accepted_dir).name
        return split_by_time(accepted_dir, self.cfg.loop.holdout_fraction, self.ws.splits / "train" / day,
                             self.ws.splits / "holdout" / day)

    def train(self, batch_dirs: list[Path], init_from: str, out_dir: Path) -> dict:
        from liveloop.training import train

        r = train(self.cfg, self.ws, [Path(d) for d in batch_dirs], init_from=init_from, out_dir=Path(out_dir))
        return {"model_dir": str(r.model_dir), "steps": r.steps, "samples": r.samples,
                "wall_seconds": r.wall_seconds, "final_loss": r.final_loss}

    def evaluate(self, jobs: list[EvalJob]) -> dict[str, dict]:
        return {job.key: run_evaluation(self.cfg, self.ws, job) for job in jobs}

    def commit(self, decision: Decision) -> CommitResult:
        return commit(self.cfg, self.ws, decision, dvc_add=self.dvc_add)

    def publish(self, summary: dict) -> None:
        """reports/loop/<day>.json and .md: the batch summary (the Prefect steps also make it an artifact)."""
        out = self.ws.reports / "loop"
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{summary['batch']}.json").write_text(json.dumps(summary, indent=2, default=str))
        (out / f"{summary['batch']}.md").write_text(batch_markdown(summary))


def _finish(steps, summary: dict, status: str, champion_after: str | None, cfg: Config, ws: Workspace,
            batch_path: Path, reference: int) -> dict:
    summary.update(status=status, champion_after=champion_after)
    record(cfg, ws, summary, batch_path, reference)
    steps.publish(summary)
    return summary


def daily_row(summary: dict) -> dict:
    """The batch's row of metrics/loop.csv (`dvc plots show`): candidate, champion and best baseline on the new
    holdout, in the metrics the loop reports (summary["report_metrics"], from evaluate.ks)."""
    headline, _, recall, ctr = summary["report_metrics"]
    candidate, champion = summary.get("candidate_metrics") or {}, summary.get("champion_metrics") or {}
    from liveloop.evaluation.evaluate import best_baseline

    best = best_baseline(summary.get("baselines"), headline)
    return {f"{headline}_candidate": candidate.get(headline), f"{headline}_champion": champion.get(headline),
            f"{recall}_candidate": candidate.get(recall), f"{headline}_best_baseline": None if best is None else best[1],
            f"{ctr}_candidate": candidate.get(ctr), "drift": int(bool(summary.get("drift"))),
            "promoted": int(summary["status"] == "promoted")}


def record(cfg: Config, ws: Workspace, summary: dict, batch_path: Path, reference: int) -> None:
    """The batch over time: a snapshot in the Evidently workspace (`make monitor`) and a row of metrics/loop.csv
    (`dvc plots show`). Both are reports: a failure is logged with its cause and the loop's decision stands."""
    import pandas as pd

    from liveloop.evaluation.report import append_daily_metrics
    from liveloop.monitoring.dashboard import record_batch, workspace_dir

    headline, _, recall, _ = summary["report_metrics"]
    try:
        events = pd.read_parquet(Path(batch_path) / "events.parquet", columns=["event_id"])
        record_batch(workspace_dir(ws.state), summary["day"],
                     drift=None if "drift" not in summary else {"drift": summary["drift"],
                                                                "signals": summary.get("drift_signals") or {}},
                     thresholds=drift_config_for(cfg.drift, reference, cfg.loop.reference_window).thresholds,
                     candidate=summary.get("candidate_metrics") or None,
                     champion=summary.get("champion_metrics") or None, baselines=summary.get("baselines"),
                     decision=summary["status"], feedback_events=len(events), quality=(headline, recall))
        append_daily_metrics(ws.metrics / "loop.csv", summary["day"], daily_row(summary))
    except Exception as exc:  # noqa: BLE001 - monitoring must not undo a committed decision
        log.error("batch %s: recording it for the dashboard / DVC plots failed: %s: %s", summary["day"],
                  type(exc).__name__, exc)


def run_batch(cfg: Config, ws: Workspace, batch_dir: Path, steps=None, force_train: bool = False,
              accepted: bool = False, drift: DriftVerdict | None = None) -> dict:
    """Take one batch through the loop; returns the batch summary (JSON-able): batch/day, validation, drift with
    reasons and signals, train_reasons, candidate and champion metrics, the gate's decision with its intervals, the
    data and model versions, the champion before and after, and status (quarantined | no-retrain | promoted |
    rejected). The champion changes only on promotion. `accepted`: the batch passed the gate earlier and is
    already in data/accepted (retrain_batch), so it is not validated again; `drift`: a verdict already found for it
    (the drift event's), so it is not checked again."""
    from liveloop import registry
    from liveloop.data.batches import list_batches

    steps = steps or LocalSteps(cfg, ws)
    day = Path(batch_dir).name
    champion_before = registry.champion_version(ws)
    summary: dict = {"batch": day, "day": day, "champion_before": champion_before,
                     "report_metrics": cfg.evaluate.report_metrics()}

    gate = GateResult(True, Path(batch_dir)) if accepted else steps.validate(Path(batch_dir))
    summary["validation"] = {"accepted": gate.accepted, "failures": gate.failures}
    if not gate.accepted:
        log.warning("batch %s quarantined: %s", day, "; ".join(gate.failures))
        return _finish(steps, summary, "quarantined", champion_before, cfg, ws, gate.path, 0)

    data_version = steps.version(gate.path)
    summary["versions"] = {"data": {day: data_version}}
    history = [p for p in list_batches(ws.accepted) if p.name < day]
    reference = reference_window(history, cfg.loop.reference_window)
    if drift is None:
        drift = steps.drift(reference, gate.path) if reference else DriftVerdict.no_reference()
    summary["drift"] = drift.drift
    summary["drift_reasons"] = drift.reasons
    summary["drift_signals"] = drift.signals
    summary["drift_report"] = drift.report_html
    champion = registry.champion_dir(ws)
    plan = plan_retrain(cfg, accepted_before=len(history), has_champion=champion is not None, drift=drift,
                        force=force_train)
    summary["train_reasons"] = plan.reasons
    if not plan.train:
        log.info("batch %s: no drift and not scheduled; champion stays", day)
        return _finish(steps, summary, "no-retrain", champion_before, cfg, ws, gate.path, len(reference))

    train_split, holdout = steps.split(gate.path)
    trained = steps.train([train_split], plan.init_from, ws.candidates / day)
    summary["train"] = trained

    replay = None
    if champion is not None:
        champion_days = registry.get_version(ws, champion_before)["data_versions"]
        holdouts = ws.splits / "holdout"
        held_out = {p.name for p in holdouts.iterdir() if p.is_dir()} if holdouts.exists() else set()
        replay_day = choose_replay_day([p.name for p in reference], champion_days, held_out)
        if replay_day is not None:
            replay_history = [h for h in history if h.name < replay_day] + [ws.splits / "train" / replay_day]
            replay = (replay_history, ws.splits / "holdout" / replay_day)
        summary["replay_day"] = replay_day
    jobs = evaluation_jobs(day, Path(trained["model_dir"]), champion, history, train_split, holdout, replay,
                           baselines=cfg.loop.baselines)
    evaluation = assemble_metrics(steps.evaluate(jobs), cfg.evaluate.ndcg_metric)
    decision = decide(evaluation, cfg, model_dir=Path(trained["model_dir"]), parent=champion_before,
                      data_versions={day: data_version})
    committed = steps.commit(decision)
    summary.update(
        candidate=committed.version,
        candidate_metrics=evaluation.candidate.get(NEW),
        champion_metrics=(evaluation.champion or {}).get(NEW),
        metrics={CANDIDATE: evaluation.candidate, CHAMPION: evaluation.champion},
        baselines=evaluation.baselines,
        decision={"promote": decision.promote, "reasons": decision.reasons, "checks": decision.checks},
    )
    summary["versions"]["model"] = committed.model_data_version
    if committed.bento:
        summary["bento_model"] = committed.bento
    return _finish(steps, summary, "promoted" if decision.promote else "rejected", committed.champion, cfg, ws,
                   gate.path, len(reference))


def retrain_batch(cfg: Config, ws: Workspace, batch_dir: Path, steps=None, drift: DriftVerdict | None = None) -> dict:
    """Update the model on a batch accepted earlier because drift was found in it since (monitor_drift's event runs
    flows/retrain.py; `liveloop loop --retrain`): run_batch from the data version on, forced. A batch some registered
    candidate was already trained on is left alone (status already-retrained): the loop's own update or an earlier
    event covered it and the gate has decided on that candidate (monitor_drift re-finds the same drift every hour).
    `drift`: the verdict that asked for the retrain (recorded and planned on instead of a second check)."""
    from liveloop import registry
    from liveloop.validation import BatchInputError

    batch_dir = Path(batch_dir)
    if not batch_dir.is_dir() or batch_dir.resolve().parent != ws.accepted.resolve():
        raise BatchInputError(f"{batch_dir} is not an accepted batch (a day folder in {ws.accepted})")
    day = batch_dir.name
    trained = [e["version"] for e in registry.load_registry(ws) if day in (e.get("data_versions") or {})]
    if trained:
        log.info("batch %s: candidate %s was already trained on it; not retraining", day, trained[-1])
        return {"batch": day, "day": day, "status": "already-retrained", "candidate": trained[-1],
                "champion_after": registry.champion_version(ws)}
    return run_batch(cfg, ws, batch_dir, steps, force_train=True, accepted=True, drift=drift)

# -------------------------------------------------------------------------------------------------- reporting
def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def batch_table(summary: dict) -> list[dict]:
    """One row per scored model of the batch (candidate and champion per set, then each baseline): the Prefect
    table artifact, so the UI shows the numbers as a table, not prose."""
    metrics = summary.get("metrics") or {}
    names = summary["report_metrics"]
    rows = [{"model": who, "set": set_name, **{n: values.get(n) for n in names}}
            for who in (CANDIDATE, CHAMPION) for set_name, values in sorted((metrics.get(who) or {}).items())]
    rows += [{"model": f"baseline: {name}", "set": NEW, **{n: values.get(n) for n in names}}
             for name, values in sorted((summary.get("baselines") or {}).items()) if name != "model"]
    return rows


def batch_markdown(summary: dict) -> str:
    """One batch as markdown: validation, drift, evaluation numbers with the gate's intervals, the decision."""
    validation = summary.get("validation") or {}
    accepted = validation.get("accepted")
    failures = validation.get("failures") or []
    lines = [f"# Batch {summary['batch']}", "",
             f"**Validation:** {'accepted' if accepted else f'quarantined ({len(failures)} failures)'}", ""]
    lines += [f"- {f}" for f in failures]
    if "drift" in summary:
        lines += ["", f"**Drift:** {'yes' if summary['drift'] else 'no'}", ""]
        lines += [f"- {r}" for r in summary.get("drift_reasons", [])]
        if summary.get("drift_report"):
            lines += ["", f"[drift report]({Path(summary['drift_report']).resolve().as_uri()})"]
    if "train_reasons" in summary:
        lines += ["", f"**Retrain:** {'; '.join(summary['train_reasons']) or 'no (no drift, not scheduled)'}"]
    metrics = summary.get("metrics")
    if metrics:
        reported = {m for sets in metrics.values() if sets for m in sets.get(NEW, {})}
        names = [m for m in summary["report_metrics"] if m in reported]
        lines += ["", "| model | set | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
        for who in (CANDIDATE, CHAMPION):
            for set_name, values in sorted((metrics.get(who) or {}).items()):
                lines.append(f"| {who} | {set_name} | " + " | ".join(_fmt(values.get(n)) for n in names) + " |")
        for name, values in sorted((summary.get("baselines") or {}).items()):
            lines.append(f"| baseline: {name} | {NEW} | " + " | ".join(_fmt(values.get(n)) for n in names) + " |")
        decision = summary.get("decision") or {}
        lines += ["", f"**Decision:** {'promote' if decision.get('promote') else 'reject'} {summary.get('candidate')}",
                  ""]
        lines += [f"- {c['reason']}" for c in decision.get("checks", [])]
    lines += ["", f"**Champion:** {summary.get('champion_before') or '-'} -> {summary.get('champion_after') or '-'}"]
    return "\n".join(lines)

