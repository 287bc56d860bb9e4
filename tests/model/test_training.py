"""Training loop on small simulated worlds: artifacts, determinism, init_from errors, the never-worse fallback of
both stages, CTR quality, kill-and-resume in a real subprocess, torchrun DDP on two CPU processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from liveloop.config import load_config
from liveloop.data.simulator import simulate
from liveloop.model import Recommender
from liveloop.model.vectors import TextEncoder
from liveloop.training import TrainError, train
from liveloop.training.checkpoint import latest_checkpoint
from liveloop.data.batches import split_by_time
from liveloop.data.schema import positive_mask
from liveloop.training.examples import TrainDataError, build_training_data, ctr_rows, rank_groups
from liveloop.training.ranking import validation_start
from liveloop.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]
SMALL = {
    "simulate": {"days": 3, "n_users": 400, "n_items": 60, "n_hosts": 4, "rooms_per_day": 3, "items_per_room": 15,
                 "sessions_per_user_per_day": 1.5},
    "model": {"history_window": 10, "seq_dim": 16, "rank_candidates": 40},
    "train": {"steps": 30, "batch_size": 32, "eval_every": 5, "checkpoint_every": 10, "warmup_steps": 2,
              "validation": 0.4, "rank_trees": 20,
              "max_rank_groups": 200, "max_ctr_rows": 3000, "device": "cpu"},
}
ARTIFACT_SUFFIXES = {".safetensors", ".json", ".csv"}


def write_params(root: Path, state: Path, **train_overrides) -> Path:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in SMALL.items():
        raw[section].update(values)
    raw["train"].update(train_overrides)
    # the state folder (and so the text-vector cache) is shared by every test of the session: each text is embedded once
    raw["paths"] = {"root": str(root), "state": str(state)}
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    return root / "params.yaml"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small models run fastest on one thread, and never stall on a machine shared with other jobs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def shared_state(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "liveloop-state"


@pytest.fixture(scope="module")
def encoder(shared_state) -> TextEncoder:
    return TextEncoder(cache_dir=shared_state / "vectors")


@pytest.fixture(scope="module")
def world(tmp_path_factory, shared_state) -> dict:
    """One simulated world and one scratch model trained on its first two days (shared by the tests below)."""
    root = tmp_path_factory.mktemp("train-world")
    cfg = load_config(write_params(root, shared_state))
    ws = Workspace.from_config(cfg)
    days = simulate(cfg.simulate, cfg.seed, ws.accepted, ws.simulator_truth)
    result = train(cfg, ws, days[:2], "scratch", root / "m1")
    return {"root": root, "cfg": cfg, "ws": ws, "days": days, "m1": result}


def metrics_of(model_dir: Path) -> dict:
    return json.loads((Path(model_dir) / "state.json").read_text())["metrics"]


# ---- inputs that cannot train ---------------------------------------------------------------------------------------
def test_bad_training_inputs_fail_clearly(world, tmp_path):
    cfg, ws, days = world["cfg"], world["ws"], world["days"]
    with pytest.raises(TrainDataError, match="no batches"):
        train(cfg, ws, [], "scratch", tmp_path / "out")
    with pytest.raises(TrainDataError, match="not a batch folder"):
        train(cfg, ws, [tmp_path], "scratch", tmp_path / "out")
    with pytest.raises(TrainError, match="not scratch, champion, or a model dir"):
        train(cfg, ws, days[:1], str(tmp_path / "missing"), tmp_path / "out")
    bad = load_config(world["root"] / "params.yaml", {"train.device": "potato"})
    with pytest.raises(TrainError, match="train.device: unknown device 'potato'"):
        train(bad, ws, days[:1], "scratch", tmp_path / "out")
    with pytest.raises(TrainError, match="already holds a finished model"):
        train(cfg, ws, days[:2], "scratch", world["m1"].model_dir)


# ---- the loop -------------------------------------------------------------------------------------------------------
def test_train_writes_a_pickle_free_model_dir_and_log(world):
    result, cfg = world["m1"], world["cfg"]
    out = result.model_dir
    assert result.steps == cfg.train.steps and result.init_from == "scratch" and result.samples > 0
    assert result.data_versions == {d.name: None for d in world["days"][:2]}
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} <= ARTIFACT_SUFFIXES, sorted(p.name for p in files)  # no pickle, no .pt
    assert {"model.safetensors", "config.json", "state.json", "stats.json"} <= {p.name for p in files}
    assert not (out / "checkpoints").exists()
    state = json.loads((out / "state.json").read_text())
    assert state["done"] and state["step"] == cfg.train.steps and state["parent"] is None
    log = pd.read_csv(out / "train_log.csv")
    assert log.step.tolist() == list(range(1, cfg.train.steps + 1)) and (log.samples_per_s > 0).all()
    assert log.loss.notna().all()


def test_same_seed_same_data_gives_identical_model(world, encoder):
    cfg, ws, days = world["cfg"], world["ws"], world["days"]
    again = train(cfg, ws, days[:2], "scratch", world["root"] / "m1-again").model_dir
    a = Recommender.load(world["m1"].model_dir, "cpu", encoder=encoder)
    b = Recommender.load(again, "cpu", encoder=encoder)
    for (name, pa), pb in zip(a.net.state_dict().items(), b.net.state_dict().values()):
        assert torch.equal(pa, pb), name
    ranker_a, ranker_b = (world["m1"].model_dir / "ranker.json"), (again / "ranker.json")
    assert ranker_a.exists() == ranker_b.exists()
    if ranker_a.exists():
        assert ranker_a.read_text() == ranker_b.read_text()


def test_fallback_never_worse_on_validation(world):
    """Warm start on a day the model already saw: stage 1 keeps its best validated step (the start included),
    stage 2 keeps the best of retrieval / new ranker / start ranker."""
    cfg, ws, days = world["cfg"], world["ws"], world["days"]
    parent = world["m1"].model_dir
    warm = train(cfg, ws, days[1:2], str(parent), world["root"] / "m-warm")
    state = json.loads((warm.model_dir / "state.json").read_text())
    assert warm.init_from == str(parent) and state["parent"] == str(parent)
    assert set(state["all_data_versions"]) == {d.name for d in days[:2]}  # the parent's data carried over
    m = state["metrics"]
    assert m["validation_examples"] >= 20, m
    assert m["tower_validation_ndcg"] >= m["tower_validation_ndcg_start"]
    ranker = m["ranker"]
    if "validation_ndcg" in ranker:
        options = ranker["validation_ndcg"]
        assert ranker["kept"] in options and options[ranker["kept"]] == max(options.values())
    else:
        assert ranker["kept"] in {"start_ranker", "retrieval"}


def test_earlier_held_out_tails_are_history_never_labels(world, tmp_path):
    """The loop scores candidate and champion on an earlier day's held-out tail (forgetting): a candidate that had
    those events as labels would be scored in-sample, so they only enter the user states."""
    cfg, days = world["cfg"], world["days"]
    splits = tmp_path / "splits"
    _, tail_dir = split_by_time(days[1], cfg.loop.holdout_fraction, splits / "train" / days[1].name,
                                splits / "holdout" / days[1].name)
    tail = pd.read_parquet(tail_dir / "events.parquet")
    tail_ids = set(tail["event_id"].astype(str))
    data = build_training_data([days[2]], days[2].parent, cfg.train, cfg.seed, replay=True,
                               holdout_root=splits / "holdout")
    assert not set(data.label_events["event_id"].astype(str)) & tail_ids
    assert len(data.label_events) == len(data.tables["events"]) - len(tail_ids)
    day1 = pd.Timestamp(days[1].name).date()
    # the pairs taken only in the tail: present in the world (so this check can fail) and never a label
    head = data.label_events.loc[pd.to_datetime(data.label_events["ts"]).dt.date == day1]
    taken = lambda df: set(zip(df["user_id"].astype(str), df["item_id"].astype(str)))
    tail_only = taken(tail.loc[positive_mask(tail)]) - taken(head.loc[positive_mask(head)])
    assert tail_only
    examples = data.examples.loc[data.examples["day"] == day1]
    assert examples["replay"].all() and not taken(examples) & tail_only
    every_group = cfg.train.model_copy(update={"max_rank_groups": 10**6, "max_ctr_rows": 10**7})
    groups = [g for g in rank_groups(data, every_group, cfg.seed) if g.day == day1]
    assert groups and not {(g.user_id, c) for g in groups for c, y in zip(g.candidates, g.labels) if y > 0} & tail_only
    rows = ctr_rows(data.label_events, every_group.max_ctr_rows)
    rows = rows.loc[pd.to_datetime(rows["t"]).dt.date == day1]
    assert len(rows) and not taken(rows.loc[rows["label"] > 0]) & tail_only
    # ...and the tail is still history: a user state after the day holds its events
    user, item = sorted(tail_only)[0]
    state = data.hist.state_at(user, pd.Timestamp(days[2].name).value, 10_000)
    assert item in state.item_counts


def _taken(events: pd.DataFrame) -> set:
    pos = events.loc[positive_mask(events)]
    return set(zip(pos["user_id"].astype(str), pos["item_id"].astype(str)))


def test_the_ranker_is_validated_on_takes_it_was_not_fitted_on(world, tmp_path):
    """One day: validation is its last cut, and the ranker is fitted on groups rebuilt from the takes before it (an
    earlier cut's labels run to the day's end and would hold every validation take)."""

    cfg, days = world["cfg"], world["days"]
    tc = cfg.train.model_copy(update={"max_rank_groups": 10**6})
    data = build_training_data([days[0]], tmp_path, tc, cfg.seed, replay=False)
    groups = rank_groups(data, tc, cfg.seed)
    start = validation_start(np.array([g.day for g in groups]), np.array([g.t_ns for g in groups]), 0.2)
    assert start == max(g.t_ns for g in groups)  # the day's last cut
    ts = pd.to_datetime(data.label_events["ts"]).to_numpy("datetime64[ns]").astype(np.int64)
    before = data.label_events.loc[ts < start]
    fit = rank_groups(replace(data, label_events=before), tc, cfg.seed)
    labelled = lambda gs: {(g.user_id, c) for g in gs for c, y in zip(g.candidates, g.labels) if y > 0}
    assert fit and labelled(fit) <= _taken(before)
    later_only = labelled([g for g in groups if g.t_ns >= start]) - _taken(before)
    assert later_only and not labelled(fit) & later_only
    # several days: validation is the newest day, and the shipped model says what it was validated on
    two = np.array([pd.Timestamp(d.name).date() for d in days[:2]])
    assert validation_start(two, np.zeros(2, np.int64), 0.2) == pd.Timestamp(days[1].name).value
    ranker = metrics_of(world["m1"].model_dir)["ranker"]
    assert pd.Timestamp(ranker["validation_start"]) >= pd.Timestamp(days[1].name) and ranker["fit_groups"] >= 1


def test_fit_ranker_fits_on_the_labels_before_its_validation_start(world, tmp_path, monkeypatch):
    """Through train(): the matrix the ranker is fitted on is built from labels before the recorded validation start
    (the full one, labels to the day's end, is only what a winner is refitted on)."""
    from liveloop.training import ranking

    label_ends, real = [], ranking.ranking_matrix

    def spy(scorer, data, tc, seed, memo=None):
        label_ends.append(pd.to_datetime(data.label_events["ts"]).max())
        return real(scorer, data, tc, seed, memo)

    monkeypatch.setattr(ranking, "ranking_matrix", spy)
    cfg, ws, days = world["cfg"], world["ws"], world["days"]
    info = metrics_of(train(cfg, ws, days[:1], "scratch", tmp_path / "one-day").model_dir)["ranker"]
    start = pd.Timestamp(info["validation_start"])
    assert len(label_ends) == 2 and label_ends[0] >= start > label_ends[1], (label_ends, start)
    assert info["fit_groups"] >= 1 and info["validation_groups"] >= 1


def test_rank_groups_offer_the_rooms_live_before_their_labels_end(world, tmp_path):
    """A train head ends at the split cut: a room starting after it has no labels, so its items are no candidates
    (counting them as not taken would teach that rooms starting later are unwanted)."""
    cfg, days = world["cfg"], world["days"]
    head, _ = split_by_time(days[2], 0.5, tmp_path / "train" / days[2].name, tmp_path / "holdout" / days[2].name)
    tc = cfg.train.model_copy(update={"max_rank_groups": 10**6})
    data = build_training_data([head], tmp_path / "none", tc, cfg.seed, replay=False)
    until = pd.to_datetime(data.label_events["ts"]).max()
    streams = data.tables["streams"]
    later = streams.loc[pd.to_datetime(streams["start"]) > until]
    only_later = {str(i) for ids in later["item_ids"] for i in ids} - {
        str(i) for ids in streams.loc[pd.to_datetime(streams["start"]) <= until, "item_ids"] for i in ids}
    assert only_later  # the world has such a room, so the check below can fail
    groups = rank_groups(data, tc, cfg.seed)
    assert groups and not {c for g in groups for c in g.candidates} & only_later


def test_a_trained_tower_step_must_beat_its_start_with_confidence():
    """The tower keeps a trained step only when the paired gain over its start holds up across validation users: a
    win carried by one user is noise, a gain on every user is not."""
    from liveloop.training.loop import beats_start

    users = [np.array([f"u{i}" for i in range(20)]), np.array([f"u{i}" for i in range(10)])]
    start = [np.full(20, 0.3), np.full(10, 0.2)]
    assert not beats_start(start, start, users, 0.8, seed=0)
    assert beats_start([g + 0.05 for g in start], start, users, 0.8, seed=0)
    lucky = [start[0] - 0.01, start[1] - 0.01]
    lucky[0][0] += 1.0  # one user's example jumps, every other one drops: the mean still rises
    assert np.mean([(a - b).mean() for a, b in zip(lucky, start)]) > 0
    assert not beats_start(lucky, start, users, 0.8, seed=0)


def test_ranker_groups_hold_exactly_the_candidates_the_scorer_ranks(world):
    """A big catalogue is cut to own items + the best by retrieval (`CatalogueScorer.generated`) when scoring; the
    ranker's groups are built with the same call, so no taken item beyond the generator's reach is added as a
    positive (added, every such outsider was one, and the ranker learned "a weak text match is wanted")."""
    from liveloop.model.scoring import CatalogueScorer, generate
    from liveloop.training.ranking import ranking_matrix

    retrieval = np.linspace(1.0, 0.0, 50)  # row 0 is the best text match
    assert generate(retrieval, np.isin(np.arange(50), [40]), 6).tolist() == [0, 1, 2, 3, 4, 40]
    cfg, days = world["cfg"], world["days"]
    rec = Recommender.load(world["m1"].model_dir)
    rec.config = rec.config.model_copy(update={"rank_candidates": 12})  # fewer than the world's rooms offer
    data = build_training_data(days[1:2], days[1].parent, cfg.train, cfg.seed, replay=False)
    scorer = CatalogueScorer.from_items(rec, data.tables["items"], data.popularity, data.tables["streams"],
                                        item_ids=data.catalogue)
    groups, m = rank_groups(data, cfg.train, cfg.seed), ranking_matrix(scorer, data, cfg.train, cfg.seed)
    limit, window = rec.config.rank_candidates, rec.config.history_window
    assert max(len(g.candidates) for g in groups) > limit  # the world's rooms offer more than the ranker orders
    own = [sum(i in scorer.table.row_of for i in data.hist.state_at(u, int(t), window).item_counts)
           for u, t in zip(m.users, m.cuts)]
    # with taken items added, a group whose take lay beyond the generator's reach grew past the limit
    assert all(size <= max(limit, n_own) for size, n_own in zip(m.sizes, own)), (m.sizes[:10], own[:10])
    assert (m.sizes == limit).any()
    # the fit matrix (labels cut earlier) read through the full matrix's memo equals one built from scratch
    cut = pd.to_datetime(data.label_events["ts"]).quantile(0.6)
    early = replace(data, label_events=data.label_events.loc[pd.to_datetime(data.label_events["ts"]) < cut])
    memo: dict = {}
    ranking_matrix(scorer, data, cfg.train, cfg.seed, memo)
    shared, fresh = ranking_matrix(scorer, early, cfg.train, cfg.seed, memo), ranking_matrix(scorer, early, cfg.train, cfg.seed)
    assert np.array_equal(shared.x, fresh.x, equal_nan=True) and np.array_equal(shared.labels, fresh.labels)
    assert np.array_equal(shared.sizes, fresh.sizes) and np.array_equal(shared.cold, fresh.cold)


def test_ctr_model_beats_chance_on_held_out_impressions(world):
    ctr = metrics_of(world["m1"].model_dir)["ranker"]["ctr"]
    assert ctr["source"] == "impressions"
    # above chance by two standard errors (Hanley & McNeil) on its validation rows: this world is a few thousand
    # impressions, so a fixed bar like 0.6 measures the draw as much as the model
    auc, n = ctr["validation_auc"]["new"], ctr["validation_rows"]
    n_pos = max(1, round(n * ctr["positive_share"]))
    n_neg = n - n_pos
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    se = ((auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (n_pos * n_neg)) ** 0.5
    assert auc - 2 * se > 0.5, (ctr, se)
    assert 0.0 <= ctr["validation_ece"] <= 1.0


# ---- processes ------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_killed_run_resumes_from_its_last_checkpoint(world, tmp_path, shared_state):
    steps = 400
    params = write_params(tmp_path, shared_state, steps=steps, checkpoint_every=2, eval_every=50)
    out = tmp_path / "models" / "run"
    cmd = [str(REPO / ".venv" / "bin" / "liveloop"), "train", "-p", str(params), "--init-from", "scratch", "--out", str(out)]
    cmd += [a for b in world["days"][:2] for a in ("--batch", str(b))]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True, env=env)
    deadline = time.time() + 120
    while latest_checkpoint(out) is None and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    ckpt = latest_checkpoint(out)
    assert ckpt is not None, proc.stderr.read().decode()[-2000:]
    killed_at = json.loads((ckpt / "state.json").read_text())["step"]
    assert 0 < killed_at < steps
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    state = json.loads((out / "state.json").read_text())
    assert state["resumed_from"] == killed_at and state["step"] == steps and state["done"]
    log = pd.read_csv(out / "train_log.csv")
    assert log.step.tolist() == list(range(1, steps + 1))  # the resumed log continues the killed one, no gap
    assert (tmp_path / "metrics" / "train.json").exists() and (tmp_path / "metrics" / "train_loss.csv").exists()
    assert not (out / "checkpoints").exists()


@pytest.mark.slow
def test_torchrun_ddp_two_cpu_processes(world, tmp_path, shared_state, encoder):
    params = write_params(tmp_path, shared_state, steps=3, batch_size=8)
    out = tmp_path / "models" / "ddp"
    cmd = [str(REPO / ".venv" / "bin" / "torchrun"), "--standalone", "--nproc_per_node=2", "-m", "liveloop.cli", "train"]
    cmd += ["-p", str(params), "--init-from", "scratch", "--out", str(out)]
    cmd += [a for b in world["days"][:2] for a in ("--batch", str(b))]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun's workers too, so a hang leaves nothing behind
        _, stderr = proc.communicate()
    assert proc.returncode == 0, stderr[-3000:]
    state = json.loads((out / "state.json").read_text())
    assert state["metrics"]["samples"] == 3 * 8 * 2  # both ranks' samples counted
    assert pd.read_csv(out / "train_log.csv").step.tolist() == [1, 2, 3]  # rank 0 alone logged
    Recommender.load(out, "cpu", encoder=encoder)


def test_every_stage_of_a_warm_start_validates_on_the_new_days_only(world, tmp_path):
    """The start was refitted on every earlier day: compared on those, it scores labels it has seen (a stable-world
    update kept a start ranker at 0.525 vs 0.438 validation NDCG that the next day's holdout scored equal). So the
    ranker, the CTR model and the tower (replay examples) of a warm start validate on the new day only. The new day
    here is a short head of day 3: a scratch model on the same data validates on the newest 60% of its groups and
    20% of its impressions (of three days), which reach back to day 2 (so each check below can fail)."""
    cfg, ws, days = world["cfg"], world["ws"], world["days"]
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"max_rank_groups": 10**6, "validation": 0.6,
                                                                       "max_ctr_rows": 10**5})})
    head, _ = split_by_time(days[2], 0.85, tmp_path / "train" / days[2].name, tmp_path / "holdout" / days[2].name)
    new_day = pd.Timestamp(days[2].name)
    assert Recommender.load(world["m1"].model_dir).ranker.has_ctr  # a start to compare with
    warm = metrics_of(train(cfg, ws, [head], str(world["m1"].model_dir), tmp_path / "warm").model_dir)
    scratch = metrics_of(train(cfg, ws, [head], "scratch", tmp_path / "scratch").model_dir)
    assert pd.Timestamp(warm["ranker"]["validation_start"]) >= new_day
    assert pd.Timestamp(scratch["ranker"]["validation_start"]) < new_day
    assert pd.Timestamp(warm["ranker"]["ctr"]["validation_from"]) >= new_day
    assert pd.Timestamp(scratch["ranker"]["ctr"]["validation_from"]) < new_day
    assert warm["replay_examples"] > 0 and warm["validation_examples"] > 0
    assert pd.Timestamp(warm["tower_validation_from"]) >= new_day
    # the shipped ranker names the days its rank model was fitted on: the start's when validation kept it
    start_days = Recommender.load(world["m1"].model_dir).ranker.info["trained_on"]
    shipped = Recommender.load(tmp_path / "warm").ranker.info["trained_on"]
    assert shipped == (start_days if warm["ranker"]["kept"] == "start_ranker" else [str(new_day.date())])


def test_rank_half_life_weights_reach_the_ranker_fit(world, tmp_path):
    """train.rank_half_life_days weights the LightGBM rows: nearly weightless older fit days give other trees."""
    from liveloop.model.scoring import CatalogueScorer
    from liveloop.training.ranking import fit_ranker

    cfg, days = world["cfg"], world["days"]
    rec = Recommender.load(world["m1"].model_dir)
    data = build_training_data(days[:3], days[0].parent, cfg.train, cfg.seed, replay=False)
    scorer = CatalogueScorer.from_items(rec, data.tables["items"], data.popularity, data.tables["streams"],
                                        item_ids=data.catalogue)
    # every group kept, the newest day validates: the fit spans two days (within one, every weight is 1)
    models = [fit_ranker(scorer, data, cfg.train.model_copy(update={"rank_half_life_days": h, "max_rank_groups": 10**6,
                                                                    "validation": 0.2}),
                         cfg.seed, None) for h in (None, 0.05)]
    assert models[0][1]["validation_start"] == models[1][1]["validation_start"]
    assert all(info["kept"] == "new_ranker" for _, info in models), [info for _, info in models]
    assert models[0][0].rank_model != models[1][0].rank_model
