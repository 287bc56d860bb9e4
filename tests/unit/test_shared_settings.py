"""Settings read by more than one stage are defined once: a second copy (which params could set apart, a train/serve
or gate/drift skew) fails here, and a params.yaml still holding a merged key is refused with where it went."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from pydantic import BaseModel
from typer.testing import CliRunner

from liveloop.cli import app
from liveloop.config import MOVED, Config, ConfigError, EvaluateConfig, load_config
from liveloop.evaluation.evaluate import MODEL, compare_to_baselines, score_all
from liveloop.evaluation.protocol import next_window

METRIC_NAME = re.compile(r"^(ndcg|recall|hr|coverage)@\d+")


def _leaves(model: type[BaseModel], prefix: str = "") -> dict[str, object]:
    """Every setting of the config tree as dotted path -> default value."""
    out: dict[str, object] = {}
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out.update(_leaves(annotation, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = field.get_default(call_default_factory=True)
    return out


def test_each_shared_setting_has_one_key():
    leaves = _leaves(Config)
    for setting in ("history_window", "popularity_days", "ks"):
        paths = [p for p in leaves if p.rsplit(".", 1)[-1] == setting]
        assert len(paths) == 1, f"{setting} is defined at {paths}: one key, read by every stage"
    own = [p for p in leaves if re.search(r"ndcg_?k$|metric$", p)]
    assert own == [], f"{own}: an NDCG cut-off or metric name of its own; derive it from evaluate.ks"
    # a metric name as a default is a copy of evaluate.ks; the gate's list is checked against ks on load
    named = {p: v for p, v in leaves.items() if p != "promotion.metrics"
             for s in (v if isinstance(v, list) else [v]) if isinstance(s, str) and METRIC_NAME.match(s)}
    assert named == {}, named


def test_repo_params_hold_no_merged_key():
    raw = yaml.safe_load((Path(__file__).resolve().parents[2] / "params.yaml").read_text())
    for dotted in MOVED:
        section, key = dotted.split(".")
        assert key not in raw.get(section, {}), f"params.yaml still sets {dotted}"


@pytest.mark.parametrize("dotted", sorted(MOVED))
def test_a_merged_key_is_refused_naming_it_and_where_it_went(params_file: Path, dotted: str):
    section, key = dotted.split(".")
    raw = yaml.safe_load(params_file.read_text())
    raw[section][key] = 10
    params_file.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as err:
        load_config(params_file)
    assert f"{dotted} is no longer a setting: use {MOVED[dotted]}" in str(err.value)
    result = CliRunner().invoke(app, ["show-config", "--params", str(params_file)])
    assert result.exit_code == 2 and f"{dotted} is no longer a setting" in result.output


def test_the_headline_metric_follows_evaluate_ks(params_file: Path):
    cfg = load_config(params_file, {"evaluate.ks": [5, 20], "promotion.metrics": ["ndcg@5", "recall@20"]})
    assert (cfg.evaluate.ndcg_k, cfg.evaluate.ndcg_metric) == (5, "ndcg@5")
    # the repo's gate names ndcg@10, which the evaluation no longer reports: refused on load, not a silent skip
    with pytest.raises(ConfigError, match=r"promotion\.metrics \['ndcg@10'\] are not reported .* evaluate\.ks \[5, 20\]"):
        load_config(params_file, {"evaluate.ks": [5, 20]})


def _tables(rows: list[tuple[str, str, int]]) -> dict[str, pd.DataFrame]:
    """Purchases (user, item, day) over six items, no rooms (every item is a candidate)."""
    from liveloop.data.schema import conform, empty

    day0 = pd.Timestamp("2026-01-01")
    events = conform(pd.DataFrame([{"event_id": f"{u}-{i}-{d}", "ts": day0 + pd.Timedelta(days=d), "user_id": u,
                                    "item_id": i, "stream_id": None, "event_type": "purchase", "text": None,
                                    "quantity": 1.0, "price": 1.0} for u, i, d in rows]), "events")
    items = conform(pd.DataFrame({"item_id": list("abcdef"), "title": [f"item {i}" for i in "abcdef"],
                                  "description": None, "category": "c", "brand": None, "price": 1.0,
                                  "first_seen": day0}), "items")
    users = conform(pd.DataFrame({"user_id": sorted(events["user_id"].unique()), "profile": None}), "users")
    return {"items": items, "streams": empty("streams"), "users": users, "events": events}


def test_evaluation_reports_every_name_the_config_lists_and_compares_on_the_headline():
    """metric_names (what promotion.metrics is checked against) is exactly what score_all reports, and the per-user
    values the gate bootstraps are the headline metric's."""
    cfg = EvaluateConfig(ks=[2, 4], bootstrap_samples=20)
    history = _tables([("u1", "a", 1), ("u2", "b", 1), ("u1", "c", 2)])
    test = _tables([("u1", "b", 30), ("u2", "c", 30), ("u1", "e", 31)])
    split = next_window(history, test)

    class Fixed:
        def __init__(self, name: str, seed: int):
            self.name, self.rng = name, np.random.default_rng(seed)

        def score(self, user_ids, item_ids):
            return self.rng.random((len(user_ids), len(item_ids)))

    result, per_user = score_all([Fixed(MODEL, 0), Fixed("popularity", 1)], split, cfg, seed=0)
    metrics = result["models"][MODEL]
    headline = {k for k in metrics if not k.endswith(("_repeat", "_new", "_warm", "_cold")) and k not in ("auc_of", "seconds")}
    assert headline == set(cfg.metric_names())
    assert np.mean(per_user[MODEL]) == pytest.approx(metrics[cfg.ndcg_metric])
    assert compare_to_baselines(result, per_user, cfg, seed=0)["metric"] == "ndcg@2"


def test_models_listing_shows_the_headline_metric_of_evaluate_ks(params_file: Path):
    from liveloop import registry
    from liveloop.workspace import Workspace

    raw = yaml.safe_load(params_file.read_text())
    raw["evaluate"]["ks"], raw["promotion"]["metrics"] = [5, 20], ["ndcg@5"]
    params_file.write_text(yaml.safe_dump(raw))
    model = params_file.parent / "cand"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights")
    (model / "config.json").write_text("{}")
    ws = Workspace.from_config(load_config(params_file))
    registry.register(ws, model, parent=None, data_versions={}, params={},
                      metrics={"candidate": {"new": {"ndcg@5": 0.25, "ndcg@10": 0.5}}})
    result = CliRunner().invoke(app, ["models", "--params", str(params_file)])
    assert result.exit_code == 0 and "ndcg@5=0.2500" in result.stdout and "ndcg@10" not in result.stdout


def test_make_run_summary_reads_the_headline_metric():
    from flows.replay_timeline import summary_table

    table = summary_table([{"batch": "2026-01-05", "status": "promoted", "candidate_metrics": {"ndcg@5": 0.25},
                            "champion_metrics": {"ndcg@5": 0.2, "ndcg@10": 0.9}}], "ndcg@5")
    assert "| ndcg@5 cand | ndcg@5 champ |" in table and "| 0.2500 | 0.2000 |" in table


def test_loop_reports_follow_evaluate_ks():
    """The batch table, markdown and metrics/loop.csv row name the metrics of evaluate.ks, not fixed ones."""
    from liveloop import loop

    reported = EvaluateConfig(ks=[5, 20]).report_metrics()
    assert reported == ["ndcg@5", "hr@5", "recall@20", "auc"]
    values = {"ndcg@5": 0.25, "hr@5": 0.5, "recall@20": 0.75, "auc": 0.6, "ndcg@10": 0.9}
    summary = {"batch": "2026-01-06", "status": "promoted", "report_metrics": reported, "candidate_metrics": values,
               "champion_metrics": {"ndcg@5": 0.2}, "metrics": {"candidate": {"new": values}},
               "baselines": {"popularity": {"ndcg@5": 0.1}, "oracle": {"ndcg@5": 0.8}}}
    assert loop.daily_row(summary) == {"ndcg@5_candidate": 0.25, "ndcg@5_champion": 0.2, "recall@20_candidate": 0.75,
                                       "ndcg@5_best_baseline": 0.1, "auc_candidate": 0.6, "drift": 0, "promoted": 1}
    assert list(loop.batch_table(summary)[0])[2:] == reported
    assert "| model | set | ndcg@5 | hr@5 | recall@20 | auc |" in loop.batch_markdown(summary)


def test_dvc_plots_name_the_columns_the_loop_writes():
    """dvc.yaml's plot of metrics/loop.csv reads columns that the loop writes with the repo's params."""
    from liveloop import loop

    repo = Path(__file__).resolve().parents[2]
    cfg = load_config(repo / "params.yaml")
    columns = set(loop.daily_row({"status": "promoted", "report_metrics": cfg.evaluate.report_metrics()}))
    plots = [p for entry in yaml.safe_load((repo / "dvc.yaml").read_text())["plots"] for p in entry.items()]
    ys = [y for path, spec in plots if path == "metrics/loop.csv"
          for y in (spec["y"] if isinstance(spec["y"], list) else [spec["y"]])]
    assert ys and set(ys) <= columns, set(ys) - columns
