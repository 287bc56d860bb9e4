"""Training loop: losses against hand-computed values, checkpoints, kill-and-resume, replay, determinism, DDP."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from liveloop.config import load_config
from liveloop.data.batches import write_batch
from liveloop.model import Recommender
from liveloop.training import TrainError, train
from liveloop.training.checkpoint import latest_checkpoint
from liveloop.training.examples import build_training_data
from liveloop.training.losses import ctr_loss, sampled_softmax_loss
from liveloop.training.replay import load_replay
from liveloop.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]
CATEGORIES = {
    "kitchen": ["ceramic coffee mug", "porcelain teapot", "steel frying pan", "glass salad bowl"],
    "fashion": ["denim jeans", "wool scarf", "leather boots", "cotton t-shirt"],
    "electronics": ["gaming mouse", "usb headset", "phone charger", "bluetooth speaker"],
}


def make_batches(accepted: Path, days: int = 2, users: int = 12, seed: int = 0) -> list[Path]:
    """Small live-commerce batches: each user loves one category, rooms show items, users click and buy in them."""
    rng = np.random.default_rng(seed)
    items = pd.DataFrame(
        [
            (f"{cat[:3]}{i}", title.title(), "", cat, f"brand{i}", float(5 + 10 * i), pd.Timestamp("2026-01-01"))
            for cat, titles in CATEGORIES.items()
            for i, title in enumerate(titles)
        ],
        columns=["item_id", "title", "description", "category", "brand", "price", "first_seen"],
    )
    by_cat = {c: items.item_id[items.category == c].tolist() for c in CATEGORIES}
    out = []
    for day in range(days):
        start = pd.Timestamp("2026-01-05") + pd.Timedelta(days=day)
        streams = pd.DataFrame(
            [(f"s{day}{c[:3]}", f"h{c}", f"{c} live deals", c, start, start + pd.Timedelta(hours=20), by_cat[c]) for c in CATEGORIES],
            columns=["stream_id", "host_id", "title", "category", "start", "end", "item_ids"],
        )
        rows = []
        for u in range(users):
            fav = list(CATEGORIES)[u % 3]
            for k in range(6):
                ts = start + pd.Timedelta(minutes=int(rng.integers(0, 1200)))
                item = rng.choice(by_cat[fav]) if rng.random() < 0.85 else rng.choice(items.item_id)
                cat = items.category[items.item_id == item].iloc[0]
                sid = f"s{day}{cat[:3]}"
                rows.append((ts, f"u{u}", item, sid, "impression", None, None))
                if cat == fav:
                    rows.append((ts + pd.Timedelta(seconds=5), f"u{u}", item, sid, "click", None, None))
                    if rng.random() < 0.5:
                        rows.append((ts + pd.Timedelta(seconds=30), f"u{u}", item, sid, "purchase", None, 1.0))
        events = pd.DataFrame(rows, columns=["ts", "user_id", "item_id", "stream_id", "event_type", "text", "quantity"])
        events.insert(0, "event_id", [f"d{day}e{i}" for i in range(len(events))])
        events["price"] = 10.0
        users_t = pd.DataFrame({"user_id": [f"u{u}" for u in range(users)], "profile": None})
        out.append(write_batch({"items": items, "streams": streams, "users": users_t, "events": events}, accepted / str(start.date())))
    return out


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, and never stall on a machine shared with other jobs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BERT with MiniLM's tokenizer: the real code path at a fraction of the cost."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from liveloop.model.recommender import encoder_path

    path = tmp_path_factory.mktemp("tiny-encoder")
    tokenizer = AutoTokenizer.from_pretrained(encoder_path("all-MiniLM-L6-v2"))
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def tiny_params(root: Path, encoder: Path, **train_overrides) -> Path:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["paths"] = {"root": str(root), "state": str(root / ".liveloop")}
    raw["model"].update(encoder=str(encoder), max_length=24, dim=16, history_events=5)
    raw["train"].update(steps=4, batch_size=8, ctr_batch_size=4, freeze_layers=1, checkpoint_every=2, warmup_steps=1, device="cpu")
    raw["train"].update(train_overrides)
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    return root / "params.yaml"


# ---- losses on hand-computed values ---------------------------------------------------------------------------------
def test_sampled_softmax_matches_hand_computation():
    logits = torch.tensor([[2.0, 0.0], [1.0, 3.0]])
    weights = torch.tensor([1.0, 3.0])
    loss = sampled_softmax_loss(logits, torch.tensor([0, 1]), weights, None)
    row0 = -math.log(math.exp(2) / (math.exp(2) + 1))
    row1 = -math.log(math.exp(3) / (math.exp(1) + math.exp(3)))
    assert loss.item() == pytest.approx((row0 + 3 * row1) / 4, rel=1e-6)
    # logQ: subtracting log q of each column; a popular negative (q=0.9) loses weight against a rare positive
    log_q = torch.log(torch.tensor([0.1, 0.9]))
    corrected = sampled_softmax_loss(logits, torch.tensor([0, 1]), torch.ones(2), log_q)
    l0 = [2 - math.log(0.1), 0 - math.log(0.9)]
    l1 = [1 - math.log(0.1), 3 - math.log(0.9)]
    expected = (-(l0[0] - math.log(sum(map(math.exp, l0)))) - (l1[1] - math.log(sum(map(math.exp, l1))))) / 2
    assert corrected.item() == pytest.approx(expected, rel=1e-6)


def test_duplicate_positive_is_not_a_negative():
    logits = torch.tensor([[1.0, 5.0], [5.0, 1.0]])
    loss = sampled_softmax_loss(logits, torch.tensor([7, 7]), torch.ones(2), None)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)  # each row's only candidate is its own positive


def test_ctr_loss_is_bce():
    loss = ctr_loss(torch.tensor([0.0, 2.0]), torch.tensor([1.0, 0.0]))
    expected = (math.log(2) + math.log(1 + math.exp(2))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)


# ---- examples ------------------------------------------------------------------------------------------------------
def test_history_index_counts_strictly_before(tmp_path, tiny_encoder):
    cfg = load_config(tiny_params(tmp_path, tiny_encoder))
    batches = make_batches(tmp_path / "data" / "accepted")
    data = build_training_data(batches, tmp_path / "data" / "accepted", cfg.model, cfg.train, cfg.seed)
    ev = pd.concat([pd.read_parquet(b / "events.parquet") for b in batches])
    pos = ev[ev.event_type.isin(["click", "purchase"])]
    assert len(data.examples) == len(pos)
    assert set(data.examples.weight) == {cfg.train.click_weight, cfg.train.purchase_weight}
    assert "u0" not in " ".join(data.examples.user_text) and "d0e" not in " ".join(data.examples.user_text)
    # CTR labels: an impression is positive exactly when the user clicked that item in that room that day
    assert 0 < data.ctr_pairs.label.mean() < 1
    row = pos.iloc[len(pos) // 2]
    count, days = data.index.lookup([row.user_id], [row.ts], [row.item_id])
    earlier = pos[(pos.user_id == row.user_id) & (pos.item_id == row.item_id) & (pos.ts < row.ts)]
    assert count[0] == len(earlier)
    if len(earlier):
        assert days[0] == pytest.approx((row.ts - earlier.ts.max()) / pd.Timedelta(days=1), abs=1e-4)
    # replay snapshot: the user's most recent distinct past items with counts and recency, as of the example's time
    snap = json.loads(data.index.snapshot(row.user_id, row.ts, max_items=2))
    before = pos[(pos.user_id == row.user_id) & (pos.ts < row.ts)]
    newest = before.sort_values("ts").drop_duplicates("item_id", keep="last").tail(2)
    assert set(snap) == set(newest.item_id)
    for item, (count, days) in snap.items():
        assert count == (before.item_id == item).sum()
        assert days == pytest.approx((row.ts - before[before.item_id == item].ts.max()) / pd.Timedelta(days=1), abs=1e-6)
    assert json.loads(data.index.snapshot("nobody", row.ts, 5)) == {}


def test_bad_training_inputs_fail_clearly(tmp_path, tiny_encoder):
    cfg = load_config(tiny_params(tmp_path, tiny_encoder))
    ws = Workspace.from_config(cfg)
    with pytest.raises(ValueError, match="no batches"):
        train(cfg, ws, [], "scratch", tmp_path / "out")
    with pytest.raises(ValueError, match="not a batch folder"):
        train(cfg, ws, [tmp_path], "scratch", tmp_path / "out")
    batches = make_batches(ws.accepted, days=1)
    with pytest.raises(TrainError, match="not scratch, champion, or a model dir"):
        train(cfg, ws, batches, str(tmp_path / "missing"), tmp_path / "out")
    bad = load_config(tiny_params(tmp_path, tiny_encoder, freeze_layers=9))
    with pytest.raises(TrainError, match="only 2 layers"):
        train(bad, ws, batches, "scratch", tmp_path / "out2")


# ---- the loop ------------------------------------------------------------------------------------------------------
def test_train_writes_model_log_replay_and_is_deterministic(tmp_path, tiny_encoder):
    cfg = load_config(tiny_params(tmp_path, tiny_encoder))
    ws = Workspace.from_config(cfg)
    batches = make_batches(ws.accepted)
    result = train(cfg, ws, batches, "scratch", tmp_path / "m1")
    assert result.steps == 4 and result.samples == 32 and result.init_from == "scratch"
    assert result.data_versions == {"2026-01-05": None, "2026-01-06": None} and math.isfinite(result.final_loss)
    log = pd.read_csv(tmp_path / "m1" / "train_log.csv")
    assert log.step.tolist() == [1, 2, 3, 4] and (log.samples_per_s > 0).all() and log.ctr_loss.notna().all()
    state = json.loads((tmp_path / "m1" / "state.json").read_text())
    assert state["done"] and state["step"] == 4 and not (tmp_path / "m1" / "checkpoints").exists()
    replay = load_replay(ws.replay)
    assert 0 < len(replay) <= cfg.train.replay_size and replay.history.notna().all()

    # same seed, same data, fresh replay -> identical weights
    shutil.rmtree(ws.replay)
    train(cfg, ws, batches, "scratch", tmp_path / "m2")
    a, b = Recommender.load(tmp_path / "m1", "cpu"), Recommender.load(tmp_path / "m2", "cpu")
    for (name, pa), pb in zip(a.net.state_dict().items(), b.net.state_dict().values()):
        assert torch.equal(pa, pb), name

    # warm start from a path mixes in replay and records its parent; a finished out dir is refused
    warm = train(cfg, ws, batches[1:], str(tmp_path / "m1"), tmp_path / "m3")
    warm_state = json.loads((tmp_path / "m3" / "state.json").read_text())
    assert warm.init_from == str(tmp_path / "m1") and warm_state["parent"] == str(tmp_path / "m1")
    assert warm_state["metrics"]["replay_examples"] > 0
    assert warm_state["data_versions"] == {"2026-01-06": None}
    assert set(warm_state["all_data_versions"]) == {"2026-01-05", "2026-01-06"}  # the parent's data carried over
    with pytest.raises(TrainError, match="already holds a finished model"):
        train(cfg, ws, batches, "scratch", tmp_path / "m1")


def test_lora_trains_adapters_and_leaves_base_weights(tmp_path, tiny_encoder):
    from safetensors.torch import load_file

    cfg = load_config(tiny_params(tmp_path, tiny_encoder, steps=2, freeze_layers=0))
    cfg.model.lora_rank = 2
    cfg.train.bf16 = True  # bf16 autocast on the same path (CPU here)
    ws = Workspace.from_config(cfg)
    train(cfg, ws, make_batches(ws.accepted, days=1), "scratch", tmp_path / "m")
    weights = load_file(str(tmp_path / "m" / "model.safetensors"))
    base = load_file(str(tiny_encoder / "model.safetensors"))
    query = "encoder.layer.0.attention.self.query"
    trained_base = next(v for k, v in weights.items() if k.endswith(f"{query}.base_layer.weight"))
    assert torch.equal(trained_base, base[f"{query}.weight"])
    lora_b = [v for k, v in weights.items() if "lora_B" in k]
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b)  # adapters moved off their zero init
    assert Recommender.load(tmp_path / "m", "cpu").encode_items(["Red Mug | kitchen"]).shape == (1, 16)


def test_bad_device_is_a_clear_error(tmp_path, tiny_encoder):
    cfg = load_config(tiny_params(tmp_path, tiny_encoder, device="potato"))
    ws = Workspace.from_config(cfg)
    with pytest.raises(TrainError, match="train.device: unknown device 'potato'"):
        train(cfg, ws, make_batches(ws.accepted, days=1), "scratch", tmp_path / "m")


def test_training_teaches_category_preference(tmp_path, tiny_encoder):
    """A random tiny encoder knows nothing; after training, a kitchen buyer ranks kitchen above electronics."""
    cfg = load_config(tiny_params(tmp_path, tiny_encoder, steps=60, batch_size=16, ctr_batch_size=0, freeze_layers=0, lr=3e-3, head_lr=3e-3))
    ws = Workspace.from_config(cfg)
    batches = make_batches(ws.accepted, days=2, users=24)
    titles = {f"{c[:3]}{i}": f"{t.title()} | {c} live deals" for c, ts in CATEGORIES.items() for i, t in enumerate(ts)}
    kitchen = [k for k in titles if k.startswith("kit")]
    electronics = [k for k in titles if k.startswith("ele")]

    def margin(rec: Recommender) -> float:
        items = rec.encode_items([titles[k] for k in kitchen + electronics])
        user = rec.encode_users(["bought: Glass Salad Bowl; clicked: Porcelain Teapot; clicked: Steel Frying Pan"])
        scores = rec.score(user, items)[0]
        return float(scores[: len(kitchen)].mean() - scores[len(kitchen) :].mean())

    torch.manual_seed(cfg.seed)
    before = margin(Recommender.from_config(cfg.model, "cpu"))
    train(cfg, ws, batches, "scratch", tmp_path / "m")
    after = margin(Recommender.load(tmp_path / "m", "cpu"))
    assert after > 1.0 and after > before + 1.0


@pytest.mark.slow
def test_killed_run_resumes_from_its_last_checkpoint(tmp_path, tiny_encoder):
    params = tiny_params(tmp_path, tiny_encoder, steps=40, checkpoint_every=2)
    batches = make_batches(tmp_path / "data" / "accepted")
    out = tmp_path / "models" / "run"
    cmd = [str(REPO / ".venv" / "bin" / "liveloop"), "train", "-p", str(params), "--init-from", "scratch", "--out", str(out)]
    cmd += [a for b in batches for a in ("--batch", str(b))]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True, env=env)
    deadline = time.time() + 120
    while latest_checkpoint(out) is None and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    ckpt = latest_checkpoint(out)
    assert ckpt is not None, proc.stderr.read().decode()[-2000:]
    killed_at = json.loads((ckpt / "state.json").read_text())["step"]
    assert 0 < killed_at < 40
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    state = json.loads((out / "state.json").read_text())
    assert state["resumed_from"] == killed_at and state["step"] == 40
    log = pd.read_csv(out / "train_log.csv")
    assert log.step.tolist() == list(range(1, 41))
    assert (tmp_path / "metrics" / "train.json").exists() and (tmp_path / "metrics" / "train_loss.csv").exists()


@pytest.mark.slow
def test_torchrun_ddp_two_cpu_processes(tmp_path, tiny_encoder):
    params = tiny_params(tmp_path, tiny_encoder, steps=3)
    batches = make_batches(tmp_path / "data" / "accepted")
    out = tmp_path / "models" / "ddp"
    cmd = [str(REPO / ".venv" / "bin" / "torchrun"), "--standalone", "--nproc_per_node=2", "-m", "liveloop.cli", "train"]
    cmd += ["-p", str(params), "--init-from", "scratch", "--out", str(out)] + [a for b in batches for a in ("--batch", str(b))]
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
    Recommender.load(out, "cpu")


# ---- stage 2: score heads on cached encoder states ----------------------------------------------------------------
def test_popularity_table_counts_whole_days_before():
    from liveloop.training.heads import popularity_table, recent_popularity

    ts = pd.to_datetime(["2026-01-01 10:00", "2026-01-01 11:00", "2026-01-02 09:00", "2026-01-04 12:00"])
    pos = pd.DataFrame({"user_id": ["u"] * 4, "item_id": ["a", "a", "b", "a"], "ts": ts})
    table, base = popularity_table(pos, {"a": 0, "b": 1, "c": 2}, window_days=2)
    assert base == pd.Timestamp("2026-01-01")
    # row k = the 2 whole days before day k; the last row is "after the last day"
    np.testing.assert_array_equal(table, [[0, 0, 0], [2, 0, 0], [2, 1, 0], [0, 1, 0], [1, 0, 0]])
    assert recent_popularity(pos, window_days=2) == {"a": 1.0}
    assert recent_popularity(pos, window_days=10) == {"a": 3.0, "b": 1.0}


def test_past_item_features_match_the_history_index(tmp_path, tiny_encoder):
    from liveloop.training.heads import past_item_features

    cfg = load_config(tiny_params(tmp_path, tiny_encoder))
    batches = make_batches(tmp_path / "data" / "accepted")
    data = build_training_data(batches, tmp_path / "data" / "accepted", cfg.model, cfg.train, cfg.seed)
    ex = data.examples.iloc[::7]
    col = {item: j for j, item in enumerate(data.item_texts)}
    rows, cols, feats = past_item_features(data.index.positives, ex["user_id"].to_numpy(), ex["ts"], col)
    items = list(data.item_texts)
    for r in range(len(ex)):
        count, days = data.index.lookup([ex.user_id.iloc[r]] * len(items), [ex.ts.iloc[r]] * len(items), items)
        mine = rows == r
        assert sorted(cols[mine]) == [j for j in range(len(items)) if count[j] > 0]
        for j, f in zip(cols[mine], feats[mine]):
            assert f[0] == pytest.approx(np.log1p(count[j])) and f[1] == pytest.approx(np.log1p(days[j]), abs=1e-4)


def test_stage_two_learns_and_keeps_its_best_held_out_step(tmp_path, tiny_encoder):
    from liveloop.training.heads import fit_score_heads

    cfg = load_config(tiny_params(tmp_path, tiny_encoder, head_steps=60, head_eval_every=10, head_validation=0.25))
    batches = make_batches(tmp_path / "data" / "accepted", users=24)
    data = build_training_data(batches, tmp_path / "data" / "accepted", cfg.model, cfg.train, cfg.seed)
    rec = Recommender.from_config(cfg.model, device="cpu", seed=0)
    fit = fit_score_heads(rec, data, cfg.train, cfg.model.popularity_days, cfg.seed)
    newest = data.examples.sort_values("ts", kind="stable").iloc[len(data.examples) - int(len(data.examples) * 0.25):]
    assert fit.examples == len(data.examples) and fit.validation_examples == newest.user_id.nunique()
    assert fit.train_loss_last < fit.train_loss_first  # the heads and score weights learn
    assert fit.validation_ndcg_after >= fit.validation_ndcg_before  # the start is a candidate: never worse held out
    assert fit.best_step % 10 == 0 and 0 <= fit.best_step <= 60  # only checked steps can be kept


def test_train_records_popularity_and_score_weights(tmp_path, tiny_encoder):
    cfg = load_config(tiny_params(tmp_path, tiny_encoder, head_steps=20, head_eval_every=5, replay_size=0))
    ws = Workspace.from_config(cfg)
    batches = make_batches(ws.accepted)
    train(cfg, ws, batches, "scratch", tmp_path / "m")
    rec = Recommender.load(tmp_path / "m", "cpu")
    ev = pd.concat([pd.read_parquet(b / "events.parquet") for b in batches])
    pos = ev[ev.event_type.isin(["click", "purchase"])]
    assert rec.item_popularity == {k: float(v) for k, v in pos.item_id.value_counts().items()}
    metrics = json.loads((tmp_path / "m" / "state.json").read_text())["metrics"]
    assert metrics["score_heads"]["steps"] == 20
    assert metrics["score_weights"]["text_scale"] == pytest.approx(rec.net.text_scale.item())


def test_vectorised_reservoir_matches_one_at_a_time_algorithm_r():
    from liveloop.training.replay import reservoir_slots

    for size, seen, n_new, capacity in [(0, 0, 50, 20), (20, 35, 400, 20), (5, 5, 3, 20), (0, 0, 0, 5)]:
        fast = reservoir_slots(size, seen, n_new, capacity, np.random.default_rng(1))
        # the sequential reference, drawing the same uniforms in the same order
        rng, slow, s, n_seen = np.random.default_rng(1), {}, size, seen
        fill = max(0, min(capacity - size, n_new))
        draws = rng.integers(0, seen + np.arange(fill, n_new) + 1) if n_new > fill else []
        for row in range(n_new):
            n_seen += 1
            if s < capacity:
                slow[s] = row
                s += 1
            elif draws[row - fill] < capacity:
                slow[int(draws[row - fill])] = row
        assert fast == slow
