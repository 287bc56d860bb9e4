"""The `liveloop` command: one command per stage, each a thin wrapper over a plain function in src/liveloop.

dvc.yaml stages and Prefect flows call the same functions, so there is exactly one implementation per stage.
Heavy imports happen inside the commands so `liveloop --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from liveloop.config import Config, ConfigError
from liveloop.workspace import Workspace, open_workspace

app = typer.Typer(help="liveloop: continuously learning recommender for live-stream commerce.", no_args_is_help=True)

PARAMS = typer.Option(Path("params.yaml"), "--params", "-p", help="params.yaml to read.")


def _setup(params: Path, overrides: dict | None = None) -> tuple[Config, Workspace]:
    """Load config (clear error on a bad value) and point every tool's state inside the workspace."""
    try:
        return open_workspace(params, overrides)
    except ConfigError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2)


def _fail(message: str, code: int = 1) -> None:
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(code)


@app.command("show-config")
def show_config(params: Path = PARAMS) -> None:
    """Print the resolved configuration (after validation) as YAML."""
    import yaml

    cfg, _ = _setup(params)
    typer.echo(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))


@app.command()
def rollback(
    version: Optional[str] = typer.Argument(None, help="Version to restore (e.g. v0003); default: the champion's parent."),
    params: Path = PARAMS,
) -> None:
    """Restore an earlier champion (atomic pointer swap); the service hot-reloads it."""
    from liveloop.registry import RegistryError, rollback as do_rollback

    _, ws = _setup(params)
    try:
        restored = do_rollback(ws, version)
    except RegistryError as exc:
        _fail(str(exc))
    typer.echo(f"champion is now {restored}")


@app.command()
def models(params: Path = PARAMS) -> None:
    """List every registered model version with its status, parent, headline metric and the best baseline on the
    same holdout."""
    from liveloop.evaluation.evaluate import best_baseline
    from liveloop.registry import champion_version, load_registry

    cfg, ws = _setup(params)
    metric = cfg.evaluate.ndcg_metric
    current = champion_version(ws)
    entries = load_registry(ws)
    if not entries:
        typer.echo("no models registered yet")
    for e in entries:
        ndcg = ((e.get("metrics") or {}).get("candidate") or {}).get("new", {}).get(metric)
        best = best_baseline((e.get("metrics") or {}).get("baselines"), metric)
        mark = "*" if e["version"] == current else " "
        typer.echo(f"{mark} {e['version']}  {e['status']:<9}  parent={e['parent'] or '-':<6} "
                   f"{metric}={'-' if ndcg is None else f'{ndcg:.4f}'}  "
                   f"best baseline={'-' if best is None else f'{best[0]} {best[1]:.4f}'}  created={e['created']}  "
                   f"{'; '.join(e.get('decision') or [])}")


@app.command()
def validate(
    batch_dir: Path = typer.Argument(..., help="Batch folder to check (YYYY-MM-DD with the four parquet tables)."),
    accepted: Optional[Path] = typer.Option(None, "--accepted", help="Where accepted batches go; default: data/accepted."),
    quarantine: Optional[Path] = typer.Option(
        None, "--quarantine", help="Where rejected batches go (with report.json/report.md); default: data/quarantine."
    ),
    copy: bool = typer.Option(False, "--copy", help="Copy the batch instead of moving it (the source stays)."),
    params: Path = PARAMS,
) -> None:
    """Check a batch against expectations/*.json; exit 0 and move it to accepted, or exit 1 and quarantine it."""
    from liveloop.validation import BatchInputError, gate_batch

    cfg, ws = _setup(params)
    try:
        result = gate_batch(batch_dir, accepted or ws.accepted, quarantine or ws.quarantine, cfg.validation, move=not copy)
    except BatchInputError as exc:
        _fail(str(exc), code=2)
    for note in result.report.skipped:
        typer.echo(f"  not checked: {note}")
    if result.accepted:
        typer.echo(f"accepted {batch_dir.name} -> {result.dest} ({result.report.elapsed_s:.2f} s)")
        return
    typer.echo(f"quarantined {batch_dir.name} -> {result.dest}: {len(result.report.failures)} problem(s)")
    for failure in result.report.failures:
        typer.echo(f"  - {failure}")
    raise typer.Exit(1)


@app.command("import-online-retail")
def import_online_retail_cmd(
    path: Path = typer.Argument(..., help="UCI Online Retail file (.parquet or .csv)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for the daily batches; default: data/incoming."),
    params: Path = PARAMS,
) -> None:
    """Import the Online Retail purchase log as one batch per day (cancellations as negative purchases)."""
    import json

    from liveloop.data.adapters import DataImportError, import_online_retail

    _, ws = _setup(params)
    try:
        summary = import_online_retail(path, out or ws.incoming)
    except DataImportError as exc:
        _fail(str(exc))
    typer.echo(json.dumps(summary, indent=2))


@app.command("import-interactions")
def import_interactions_cmd(
    events: Path = typer.Option(..., "--events", help="Events file (.csv or .parquet), one row per interaction."),
    items: Path = typer.Option(..., "--items", help="Items file (.csv or .parquet) with the item text."),
    user_col: str = typer.Option(..., "--user-col", help="Events column holding the user id."),
    item_col: str = typer.Option(..., "--item-col", help="Column holding the item id (in both files)."),
    time_col: str = typer.Option(..., "--time-col", help="Events column holding the time (ISO 8601 or Unix epoch)."),
    text_cols: str = typer.Option(
        ..., "--text-cols", help="Comma-separated items columns with text: the first is the title, the rest the description."
    ),
    event_type_col: Optional[str] = typer.Option(
        None, "--event-type-col", help="Events column with impression/click/add_to_cart/purchase/comment; default: all purchases."
    ),
    category_col: Optional[str] = typer.Option(
        None, "--category-col", help="Items column with the category; default: derived from the title's head noun."
    ),
    price_col: Optional[str] = typer.Option(
        None, "--price-col", help="Price column, in the items file or else the events file (item price = median paid)."
    ),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for the daily batches; default: data/incoming."),
    params: Path = PARAMS,
) -> None:
    """Import your own events and items files as one batch per day."""
    import json

    from liveloop.data.adapters import DataImportError, InteractionMapping, import_interactions

    _, ws = _setup(params)
    try:
        mapping = InteractionMapping(
            user_col=user_col,
            item_col=item_col,
            time_col=time_col,
            text_cols=tuple(text_cols.split(",")),
            event_type_col=event_type_col,
            category_col=category_col,
            price_col=price_col,
        )
        summary = import_interactions(events, items, mapping, out or ws.incoming)
    except DataImportError as exc:
        _fail(str(exc))
    typer.echo(json.dumps(summary, indent=2))
    if summary["items_without_price"]:
        typer.secho(
            f"warning: {summary['items_without_price']} of {summary['items']} items have no positive price; "
            "the validation gate requires items.price, so batches holding them will be quarantined (use --price-col)",
            fg="yellow",
            err=True,
        )


@app.command("simulate")
def simulate_cmd(
    days: Optional[int] = typer.Option(None, "--days", help="Days to simulate; default: simulate.days."),
    scenario: Optional[str] = typer.Option(
        None, "--scenario",
        help="stable | seasonal-shift | new-category | price-shock | host-churn | comment-shift; default: simulate.scenario.",
    ),
    drift_day: Optional[int] = typer.Option(
        None, "--drift-day", help="Day index (0-based) where the drift starts; default: simulate.drift_day (null = mid-run)."
    ),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed; default: the top-level seed in params.yaml."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for the daily batches; default: data/incoming."),
    truth: Optional[Path] = typer.Option(
        None, "--truth",
        help="Folder for the hidden ground truth (oracle); default: data/simulator, or <out>-truth beside --out.",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing day folders and a different run's truth."),
    params: Path = PARAMS,
) -> None:
    """Simulate live-commerce days (one batch folder per day) with a hidden ground truth for oracle evaluation."""
    from liveloop.data.simulator import SimulationError, simulate, with_overrides

    cfg, ws = _setup(params)
    try:
        sim_cfg = with_overrides(cfg.simulate, days=days, scenario=scenario, drift_day=drift_day)
        # a run written elsewhere keeps its truth beside it, so it never clashes with the workspace's own run
        truth = truth or (out.with_name(out.name + "-truth") if out is not None else ws.simulator_truth)
        written = simulate(sim_cfg, cfg.seed if seed is None else seed, out or ws.incoming, truth, overwrite=overwrite)
    except SimulationError as exc:
        _fail(str(exc))
    typer.echo(f"wrote {len(written)} day batch(es) {written[0].name}..{written[-1].name} to {written[0].parent} "
               f"(scenario {sim_cfg.scenario}); truth in {truth or ws.simulator_truth}")

@app.command("train")
def train_cmd(
    batch: Optional[list[Path]] = typer.Option(
        None, "--batch", "-b", help="Batch folder to train on (repeatable); default: accepted batches the champion has not seen."
    ),
    init_from: Optional[str] = typer.Option(
        None, "--init-from", help="scratch | champion | path to a model dir; default: train.init_from."
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Model dir to write; resumes from its last checkpoint. Default: models/candidates/<last day>."
    ),
    params: Path = PARAMS,
) -> None:
    """Update the recommender on new batches (+ replay from earlier ones): towers, then ranker; writes a model dir and metrics/train.*."""
    import json
    import os
    import shutil

    from liveloop.data.batches import list_batches
    from liveloop.registry import champion_dir
    from liveloop.training import TrainError, train
    from liveloop.training.examples import TrainDataError
    from liveloop.training.loop import LOG_FILE

    cfg, ws = _setup(params)
    if batch:
        batches = list(batch)
    else:
        champion = champion_dir(ws)
        seen = json.loads((champion / "state.json").read_text()).get("all_data_versions", {}) if champion else {}
        batches = [d for d in list_batches(ws.accepted) if d.name not in seen]
    if not batches:
        _fail(f"no batches to train on: give --batch or accept new batches into {ws.accepted}")
    missing = [str(b) for b in batches if not b.is_dir()]
    if missing:
        _fail(f"batch folder(s) not found: {', '.join(missing)}")
    out_dir = out or ws.candidates / sorted(batches)[-1].name
    try:
        result = train(cfg, ws, batches, init_from or cfg.train.init_from, out_dir)
    except (TrainError, TrainDataError) as exc:
        _fail(str(exc))
    if int(os.environ.get("RANK", "0")) != 0:
        return
    ws.metrics.mkdir(parents=True, exist_ok=True)
    summary = {
        "model_dir": str(result.model_dir), "steps": result.steps, "samples": result.samples,
        "wall_seconds": round(result.wall_seconds, 2), "final_loss": result.final_loss, "init_from": result.init_from,
        "data_versions": result.data_versions,
    }
    (ws.metrics / "train.json").write_text(json.dumps(summary, indent=2))
    shutil.copyfile(result.model_dir / LOG_FILE, ws.metrics / "train_loss.csv")
    typer.echo(f"trained {result.steps} steps ({result.samples} samples, {result.wall_seconds:.1f} s, "
               f"final loss {result.final_loss:.4f}, from {result.init_from}) -> {result.model_dir}")


@app.command("drift")
def drift_cmd(
    reference: list[Path] = typer.Option(
        ..., "--reference", "-r", help="Reference batch folder(s): the champion's training window (repeatable)."
    ),
    current: Path = typer.Option(..., "--current", "-c", help="The new batch folder to check."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for drift_report.html and drift.json."),
    champion: Optional[Path] = typer.Option(
        None, "--champion", help="Model dir of the champion; default: the workspace champion, if any."
    ),
    params: Path = PARAMS,
) -> None:
    """Check a batch for drift against the reference (Evidently), apply the retrain policy (drift.thresholds),
    write an HTML report and a JSON verdict. Exits 0 whether or not drift is found."""
    from liveloop.model.recommender import ModelError
    from liveloop.monitoring import DriftInputError, check_drift
    from liveloop.registry import RegistryError, champion_dir

    cfg, ws = _setup(params)
    try:
        model_dir = champion or champion_dir(ws)
        verdict = check_drift(list(reference), current, out, cfg.drift, model_dir, model_cfg=cfg.model,
                              evaluate_cfg=cfg.evaluate)
    except (DriftInputError, ModelError, RegistryError) as exc:
        _fail(str(exc))
    typer.echo(f"drift: {'yes' if verdict['drift'] else 'no'} ({verdict['seconds']:.1f} s); report {verdict['report_html']}")
    for reason in verdict["reasons"]:
        typer.echo(f"  - {reason}")


@app.command("package")
def package_cmd(
    build: bool = typer.Option(True, "--build/--no-build", help="Also build a bento from bentofile.yaml (offline)."),
    params: Path = PARAMS,
) -> None:
    """Save the champion (weights, item index, catalog, config) to the BentoML model store and build the bento."""
    from liveloop.registry import RegistryError
    from liveloop.serving.package import PackagingError, package_champion

    cfg, ws = _setup(params)
    try:
        tags = package_champion(cfg, ws, build=build)
    except (PackagingError, RegistryError) as exc:
        _fail(str(exc))
    typer.echo(f"model {tags['model']}" + (f", bento {tags['bento']}" if "bento" in tags else "")
               + f" (BENTOML_HOME={ws.bentoml_home})")


@app.command("loop")
def loop_cmd(
    batch_dir: Path = typer.Argument(..., help="New batch folder (YYYY-MM-DD with the four parquet tables)."),
    force_train: bool = typer.Option(False, "--force-train", help="Update the model even without drift or schedule."),
    retrain: bool = typer.Option(False, "--retrain", help="BATCH_DIR is already in data/accepted: update the model on "
                                 "it unless a candidate was trained on it (what a drift event triggers)."),
    root: Optional[Path] = typer.Option(
        None, "--root", help="Workspace root instead of paths.root (tool state inside it); dvc.yaml gives each day its own."
    ),
    dvc_add: bool = typer.Option(
        True, "--dvc-add/--no-dvc-add",
        help="`dvc add` + push the accepted batch and a promoted model, or only record their md5 (inside `dvc repro`).",
    ),
    package: Optional[bool] = typer.Option(
        None, "--package/--no-package", help="Package a promoted champion for BentoML; default: loop.package."
    ),
    params: Path = PARAMS,
) -> None:
    """One batch through the whole loop without Prefect: validate, version, drift, update, evaluate, gate, commit.
    Prints the batch summary as JSON (also in reports/loop/<day>.json)."""
    import json

    from liveloop.loop import LocalSteps, LoopError, retrain_batch, run_batch
    from liveloop.monitoring import DriftInputError
    from liveloop.serving.package import PackagingError
    from liveloop.training.examples import TrainDataError
    from liveloop.validation import BatchInputError
    from liveloop.versioning import VersioningError

    overrides = {"paths.root": None if root is None else str(root.resolve()), "loop.package": package}
    cfg, ws = _setup(params, {k: v for k, v in overrides.items() if v is not None})
    _log_progress()
    steps = LocalSteps(cfg, ws, dvc_add=dvc_add)
    try:
        summary = (retrain_batch(cfg, ws, batch_dir, steps) if retrain
                   else run_batch(cfg, ws, batch_dir, steps, force_train=force_train))
    except BatchInputError as exc:
        _fail(str(exc), code=2)
    except (LoopError, DriftInputError, PackagingError, TrainDataError, VersioningError, *_evaluation_errors()) as exc:
        _fail(str(exc))
    typer.echo(json.dumps(summary, indent=2, default=str))


def _evaluation_errors() -> tuple[type[Exception], ...]:
    """User-facing errors of evaluate/benchmark (bad folders, empty windows, bad model dirs, unknown ids)."""
    from liveloop.data.simulator import SimulationError
    from liveloop.evaluation.evaluate import EvaluationError
    from liveloop.evaluation.protocol import ProtocolError
    from liveloop.model.recommender import ModelError
    from liveloop.registry import RegistryError
    from liveloop.training import TrainError

    return EvaluationError, ProtocolError, ModelError, RegistryError, SimulationError, TrainError


def _log_progress() -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")


@app.command("evaluate")
def evaluate_cmd(
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Model dir to evaluate; default: the champion."),
    history: Optional[list[Path]] = typer.Option(
        None, "--history", help="History batch folder (repeatable); default: every accepted batch before the test batch."
    ),
    test: Optional[Path] = typer.Option(None, "--test", "-t", help="Batch folder to evaluate on; default: the latest accepted batch."),
    truth: Optional[Path] = typer.Option(
        None, "--truth", help="Simulator truth folder for the oracle row; default: data/simulator when it exists."
    ),
    baselines: bool = typer.Option(True, "--baselines/--no-baselines", help="Also score every baseline on the same split."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Metrics JSON (DVC metrics); default: metrics/eval.json."),
    report: Optional[Path] = typer.Option(None, "--report", help="Markdown table; default: reports/evaluation.md."),
    params: Path = PARAMS,
) -> None:
    """Rank the test batch's candidates with the model, the baselines and the oracle; write metrics and a table."""
    from liveloop.data.batches import list_batches
    from liveloop.evaluation import evaluate_model
    from liveloop.registry import champion_dir

    cfg, ws = _setup(params)
    _log_progress()
    try:
        model_dir = model or champion_dir(ws)
        if model_dir is None:
            _fail("no model to evaluate: give --model or promote a champion first")
        if test is None:
            accepted = list_batches(ws.accepted)
            if not accepted:
                _fail(f"no batch to evaluate on: give --test or accept batches into {ws.accepted}")
            test = accepted[-1]
        if history is None:
            history = [d for d in list_batches(ws.accepted) if d.name < test.name]
        if truth is None and ws.simulator_truth.exists():
            truth = ws.simulator_truth
        result = evaluate_model(cfg, model_dir, history, test, truth_dir=truth, out_json=out or ws.metrics / "eval.json",
                                out_md=report or ws.reports / "evaluation.md", baselines=baselines)
    except _evaluation_errors() as exc:
        _fail(str(exc))
    from liveloop.evaluation.report import markdown_report

    typer.echo(markdown_report(result, f"Evaluation on {test.name}"))


@app.command("benchmark")
def benchmark_cmd(
    data: Path = typer.Option(..., "--data", "-d", help="Folder of daily batches (from import-online-retail / import-interactions)."),
    out: Path = typer.Option(..., "--out", "-o", help="Result JSON; a .md table and a <name>-model/ dir are written beside it."),
    params: Path = PARAMS,
) -> None:
    """Fine-tune on the data before the time cut, then compare the model with every baseline after it."""
    from liveloop.evaluation import run_benchmark
    from liveloop.evaluation.report import markdown_report

    cfg, ws = _setup(params)
    if not data.is_dir():
        _fail(f"--data {data} is not a folder")
    _log_progress()
    try:
        result = run_benchmark(cfg, ws, data, out)
    except _evaluation_errors() as exc:
        _fail(str(exc))
    typer.echo(markdown_report(result, f"Benchmark on {data.name}"))


if __name__ == "__main__":  # pragma: no cover
    app()
