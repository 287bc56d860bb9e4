"""live_loop: one new batch through the whole loop, as Prefect runs it.

The sequence and every decision live in liveloop.loop.run_batch (also `liveloop loop BATCH`, without Prefect); this
flow only wires its steps to Prefect tasks: retries where a retry makes sense, the evaluations submitted together to
the configured task runner (threads, or Dask with loop.task_runner: dask), and per batch a markdown, a table and a
link artifact. Tasks receive the params path and small values, never DataFrames, so inputs hash and results stay small.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from flows.events import emit_drift
from liveloop import loop
from liveloop.workspace import open_workspace


@task
def validate_batch_task(params: str, batch_dir: str) -> loop.GateResult:
    cfg, ws = open_workspace(params)
    return loop.LocalSteps(cfg, ws).validate(Path(batch_dir))


@task(retries=2, retry_delay_seconds=2)
def version_task(params: str, path: str) -> str:
    cfg, ws = open_workspace(params)
    return loop.LocalSteps(cfg, ws).version(Path(path))


@task
def split_task(params: str, accepted_dir: str) -> tuple[Path, Path]:
    cfg, ws = open_workspace(params)
    return loop.LocalSteps(cfg, ws).split(Path(accepted_dir))


@task(retries=1, retry_delay_seconds=2)
def drift_task(params: str, reference_dirs: list[str], current_dir: str) -> dict:
    """The verdict as a dict (drift, reasons, signals, report_html), as monitor_drift reads it too."""
    cfg, ws = open_workspace(params)
    return asdict(loop.LocalSteps(cfg, ws).drift([Path(d) for d in reference_dirs], Path(current_dir)))


@task(retries=1, retry_delay_seconds=2)
def train_task(params: str, batch_dirs: list[str], init_from: str, out_dir: str) -> dict:
    """Retrying with the same out_dir resumes from the last checkpoint written there."""
    cfg, ws = open_workspace(params)
    return loop.LocalSteps(cfg, ws).train([Path(d) for d in batch_dirs], init_from, Path(out_dir))


@task
def evaluate_task(params: str, model_dir: str, history_dirs: list[str], test_dir: str, name: str,
                  baselines: bool = False) -> dict:
    cfg, ws = open_workspace(params)
    job = loop.EvalJob(name, Path(model_dir), [Path(d) for d in history_dirs], Path(test_dir), name, baselines)
    return loop.run_evaluation(cfg, ws, job)


@task(retries=2, retry_delay_seconds=2)
def commit_task(params: str, decision: loop.Decision) -> loop.CommitResult:
    """Register, promote or reject, version and package; a retry finds the version already registered."""
    cfg, ws = open_workspace(params)
    return loop.commit(cfg, ws, decision, flow_run_id=str(flow_run.get_id() or ""))


class PrefectSteps:
    """loop.run_batch's steps as Prefect tasks of the running flow."""

    def __init__(self, params: str):
        self.params = params

    def validate(self, batch_dir: Path) -> loop.GateResult:
        return validate_batch_task(self.params, str(batch_dir))

    def version(self, path: Path) -> str:
        return version_task(self.params, str(path))

    def drift(self, reference: list[Path], current: Path) -> loop.DriftVerdict:
        """Drift found is also a Prefect event (flows/events.py); the running flow retrains on it itself."""
        verdict = drift_task(self.params, [str(d) for d in reference], str(current))
        if verdict["drift"]:
            emit_drift(flow_run.flow_name, current, verdict)
        return loop.DriftVerdict.from_check(verdict)

    def split(self, accepted_dir: Path) -> tuple[Path, Path]:
        return split_task(self.params, str(accepted_dir))

    def train(self, batch_dirs: list[Path], init_from: str, out_dir: Path) -> dict:
        return train_task(self.params, [str(d) for d in batch_dirs], init_from, str(out_dir))

    def evaluate(self, jobs: list[loop.EvalJob]) -> dict[str, dict]:
        """Independent, so submitted together to the flow's task runner."""
        futures = {job.key: evaluate_task.submit(self.params, str(job.model_dir), [str(h) for h in job.history],
                                                 str(job.test), job.name, baselines=job.baselines) for job in jobs}
        return {key: future.result() for key, future in futures.items()}

    def commit(self, decision: loop.Decision) -> loop.CommitResult:
        return commit_task(self.params, decision)

    def publish(self, summary: dict) -> None:
        cfg, ws = open_workspace(self.params)
        loop.LocalSteps(cfg, ws).publish(summary)
        key = f"batch-{summary['batch']}".lower()
        create_markdown_artifact(markdown=loop.batch_markdown(summary), key=key,
                                 description=f"liveloop batch {summary['batch']}")
        rows = loop.batch_table(summary)
        if rows:
            create_table_artifact(table=rows, key=f"{key}-table", description=f"metrics of batch {summary['batch']}")
        if summary.get("drift_report"):
            create_link_artifact(link=Path(summary["drift_report"]).resolve().as_uri(), link_text="Evidently drift report",
                                 key=f"{key}-drift-report", description=f"drift report of batch {summary['batch']}")


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


def configured(flow_obj, cfg):
    """`flow_obj` with the task runner of params (loop.task_runner, loop.dask_address): what `make run` uses and what
    a scheduled deployment should be built from (`configured(live_loop, cfg).to_deployment(...)`)."""
    return flow_obj.with_options(task_runner=task_runner(cfg))


@flow(name="live_loop", log_prints=True)
def live_loop(batch_dir: str | None = None, params: str = "params.yaml", force_train: bool = False) -> dict:
    """Take one batch (default: the oldest in data/incoming) through the loop; the champion changes only on promotion."""
    from liveloop.data.batches import list_batches

    cfg, ws = open_workspace(params)
    if batch_dir is None:
        pending = list_batches(ws.incoming)
        if not pending:
            get_run_logger().info("no batch waiting in %s", ws.incoming)
            return {"status": "idle"}
        batch_dir = str(pending[0])
    return loop.run_batch(cfg, ws, Path(batch_dir), steps=PrefectSteps(params), force_train=force_train)
