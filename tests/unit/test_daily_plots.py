"""Per-day loop metrics as a DVC plot: append_daily_metrics writes the CSV, real `dvc plots show` reads it."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from liveloop.evaluation.report import append_daily_metrics

DVC = [sys.executable, "-m", "dvc"]


def test_append_daily_metrics_replaces_a_retried_day_and_unions_columns(tmp_path: Path):
    path = tmp_path / "metrics" / "loop.csv"
    append_daily_metrics(path, "2026-01-02", {"ndcg@10_candidate": 0.2, "promoted": 1})
    append_daily_metrics(path, "2026-01-01", {"ndcg@10_candidate": 0.1})
    append_daily_metrics(path, "2026-01-02", {"ndcg@10_candidate": 0.3, "promoted": 0, "drift": None})
    rows = list(csv.DictReader(open(path)))
    assert [r["day"] for r in rows] == ["2026-01-01", "2026-01-02"]
    assert rows[1] == {"day": "2026-01-02", "drift": "", "ndcg@10_candidate": "0.3", "promoted": "0"}
    with pytest.raises(ValueError, match="scalars"):
        append_daily_metrics(path, "2026-01-03", {"signals": {"a": 1}})


def test_dvc_plots_show_draws_the_daily_metrics(tmp_path: Path):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(DVC + ["init", "-q"], cwd=tmp_path, check=True)
    for day, value in (("2026-01-01", 0.1), ("2026-01-02", 0.25)):
        append_daily_metrics(tmp_path / "metrics" / "loop.csv", day, {"ndcg@10_candidate": value})
    (tmp_path / "dvc.yaml").write_text("plots:\n  - metrics/loop.csv:\n      x: day\n      y: ndcg@10_candidate\n")
    out = subprocess.run(DVC + ["plots", "show", "--json"], cwd=tmp_path, capture_output=True, text=True, check=True)
    shown = json.loads(out.stdout)
    points = [d for plot in shown["data"]["metrics/loop.csv"] for d in plot["content"]["data"]["values"]]
    assert [(p["day"], float(p["ndcg@10_candidate"])) for p in points] == [("2026-01-01", 0.1), ("2026-01-02", 0.25)]
    html = subprocess.run(DVC + ["plots", "show", "-o", "plots"], cwd=tmp_path, capture_output=True, text=True)
    assert html.returncode == 0 and (tmp_path / "plots" / "index.html").exists(), html.stderr
