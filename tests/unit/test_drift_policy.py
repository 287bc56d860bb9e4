"""The retrain policy (thresholds -> verdict and reasons) and the per-batch frames it is measured on."""

from __future__ import annotations

import pandas as pd
import pytest

from liveloop.config import ConfigError, DriftThresholds, load_config
from liveloop.monitoring.frames import event_frame, interest_match, new_value_share, repriced_share, user_frame
from liveloop.monitoring.policy import decide


def _signals(**parts) -> dict:
    base = {
        "tabular": {
            "drifted_share": 0.0,
            "columns": {"price": {"score": 0.02, "method": "wasserstein", "threshold": 0.1, "drift": False}},
        },
        "new_values": {"category": 0.0, "host_id": 0.0},
        "embeddings": {"items": {"auc": 0.52}, "comments": {"auc": 0.55}},
        "prediction": {"top_score": 0.03},
        "performance": {"ndcg@10": {"current": 0.30, "baseline": 0.31, "baseline_source": "on x", "relative_drop": 0.03}},
    }
    base.update(parts)
    return base


def test_quiet_signals_give_no_drift_and_no_reasons():
    assert decide(_signals(), DriftThresholds()) == (False, [])
    assert decide({}, DriftThresholds()) == (False, [])


def test_column_over_its_threshold_is_drift_with_the_column_and_number_named():
    columns = {"price": {"score": 0.4621, "method": "wasserstein", "threshold": 0.1, "drift": True}}
    drift, reasons = decide(_signals(tabular={"drifted_share": 0.17, "columns": columns}), DriftThresholds(column_drift={"price": 0.45}))
    assert drift
    assert reasons == ["price drifted: wasserstein distance 0.462 >= 0.45"]


def test_threshold_comes_from_the_policy_not_from_the_signal():
    columns = {"price": {"score": 0.35, "method": "wasserstein", "threshold": 0.1, "drift": True}}
    signals = _signals(tabular={"drifted_share": 0.0, "columns": columns})
    assert decide(signals, DriftThresholds(column_drift={"price": 0.3}))[0]
    looser = DriftThresholds(column_drift={"price": 0.5})
    assert decide(signals, looser) == (False, [])


def test_each_signal_kind_gives_its_own_reason():
    signals = _signals(
        tabular={"drifted_share": 0.5, "columns": {}},
        new_values={"category": 0.12, "host_id": 0.0},
        embeddings={"comments": {"auc": 0.81}},  # comments threshold 0.8
        prediction={"top_score": 0.3},
        performance={"ndcg@10": {"current": 0.2, "baseline": 0.4, "baseline_source": "recorded", "relative_drop": 0.5}},
    )
    drift, reasons = decide(signals, DriftThresholds())
    assert drift and len(reasons) == 5
    text = "\n".join(reasons)
    assert "50% of tabular columns drifted" in text
    assert "12.0% of events have a category unseen" in text
    assert "comment text embeddings drifted: domain classifier ROC AUC 0.810" in text
    assert "top score distribution drifted" in text
    assert "ndcg@10 fell 50% (0.200 on this batch vs 0.400 recorded" in text


def test_reaching_the_threshold_exactly_counts_as_drift():
    drift, reasons = decide(_signals(embeddings={"items": {"auc": 0.65}}), DriftThresholds(embedding_auc={"items": 0.65}))
    assert drift and "item text embeddings" in reasons[0]


def test_bad_threshold_in_params_names_the_field(params_file):
    with pytest.raises(ConfigError, match="drift.thresholds.ndcg_drop"):
        load_config(params_file, {"drift.thresholds.ndcg_drop": 3})


def test_user_frame_counts_events_and_splits_sessions_on_gaps():
    t0 = pd.Timestamp("2026-01-05 10:00")
    events = pd.DataFrame(
        {
            "user_id": ["a", "a", "a", "b"],
            # a: one 10-minute session, then (after 2 h) a single-event session; b: one event
            "ts": [t0, t0 + pd.Timedelta(minutes=10), t0 + pd.Timedelta(hours=2), t0],
        }
    )
    frame = user_frame(events, session_gap_minutes=30)
    assert sorted(frame["events_per_user"]) == [1.0, 3.0]
    assert sorted(frame["session_minutes"]) == [0.0, 5.0]


def test_event_frame_joins_category_price_and_host():
    tables = {
        "items": pd.DataFrame({"item_id": ["i1", "i2"], "category": ["shoes", "bags"], "price": [10.0, 99.0]}),
        "streams": pd.DataFrame({"stream_id": ["s1"], "host_id": ["h7"]}),
        "events": pd.DataFrame(
            {"item_id": ["i2", "i1"], "event_type": ["click", "purchase"], "stream_id": ["s1", None],
             "user_id": ["u1", "u2"]}
        ),
    }
    frame = event_frame(tables)
    assert frame.to_dict("list") == {
        "category": ["bags", "shoes"],
        "price": [99.0, 10.0],
        "event_type": ["click", "purchase"],
        "host_id": ["h7", "(no room)"],
        "user_id": ["u1", "u2"],
        "item_id": ["i2", "i1"],
    }


def test_new_value_share_is_the_share_of_unseen_values():
    assert new_value_share(pd.Series(["a", "b"]), pd.Series(["a", "c", "c", "b"])) == 0.5
    assert new_value_share(pd.Series(["a"]), pd.Series([], dtype=str)) == 0.0


def test_interest_match_is_each_users_history_share_of_the_event_category():
    history = pd.DataFrame({"user_id": ["a", "a", "a", "a", "b"], "category": ["shoes", "shoes", "shoes", "bags", "toys"]})
    current = pd.DataFrame({"user_id": ["a", "a", "b", "new"], "category": ["shoes", "toys", "toys", "shoes"]})
    # a: 3/4 of history in shoes, never toys; b: all toys; a user without history is left out
    assert interest_match(history, current).tolist() == [0.75, 0.0, 1.0]
    assert len(interest_match(history.iloc[:0], current)) == 0


def test_interest_drop_gives_a_reason_with_both_values():
    interest = {"reference": 0.5, "current": 0.1, "relative_drop": 0.8}
    drift, reasons = decide(_signals(interest=interest), DriftThresholds(interest_drop=0.4))
    assert drift and reasons == [
        "returning users moved away from their categories: category match 0.100 vs 0.500 in the reference, "
        "a 80% drop (policy: >= 40%)"
    ]
    assert decide(_signals(interest={**interest, "relative_drop": 0.39}), DriftThresholds(interest_drop=0.4)) == (False, [])


def test_repriced_share_compares_each_item_with_its_own_reference_price():
    reference = pd.DataFrame({"item_id": ["a", "b", "c"], "price": [10.0, 20.0, 30.0]})
    # a +5% (within tolerance), b doubled, c unchanged, d unknown to the reference (not judged)
    current = pd.DataFrame({"item_id": ["a", "b", "b", "c", "d"], "price": [10.5, 40.0, 40.0, 30.0, 99.0]})
    assert repriced_share(reference, current) == 0.5
    assert repriced_share(reference, current[current["item_id"] == "d"]) == 0.0
    drift, reasons = decide({"repriced_share": 0.5}, DriftThresholds(repriced_share=0.1))
    assert drift and reasons == ["50.0% of events are on items repriced since the reference (policy: >= 10.0%)"]
