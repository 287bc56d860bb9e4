"""Heavy independent tasks run on a real local Dask cluster through prefect-dask's task runner."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect import flow
from prefect.testing.utilities import prefect_test_harness

pytestmark = pytest.mark.slow


def test_evaluations_run_on_a_local_dask_cluster(tiny_workspace: Path):
    from flows.live_loop import evaluate_task, task_runner
    from liveloop.config import load_config
    from liveloop.data.simulator import simulate
    from liveloop.model.recommender import Recommender
    from liveloop.workspace import open_workspace

    params = str(tiny_workspace)
    cfg = load_config(params, overrides={"loop.task_runner": "dask", "loop.dask_workers": 1})
    runner = task_runner(cfg)
    assert type(runner).__name__ == "DaskTaskRunner"
    _, ws = open_workspace(params)
    cfg.simulate.days = 2
    days = simulate(cfg.simulate, cfg.seed, ws.incoming, ws.simulator_truth)
    model_dir = tiny_workspace.parent / "model"
    Recommender.from_config(cfg.model).save(model_dir)

    @flow(task_runner=runner)
    def two_evaluations() -> list[dict]:
        jobs = [evaluate_task.submit(params, str(model_dir), [str(days[0])], str(days[1]), f"dask-{i}")
                for i in range(2)]
        return [job.result() for job in jobs]

    with prefect_test_harness(server_startup_timeout=120):
        first, second = two_evaluations()
    assert first["models"]["model"]["ndcg@10"] == pytest.approx(second["models"]["model"]["ndcg@10"])
    assert 0.0 <= first["models"]["model"]["ndcg@10"] <= 1.0
    assert (ws.reports / "evaluation" / "dask-0.json").exists()
