"""Text rendering: what the towers read, and what they must never read (ids)."""

from __future__ import annotations

import pandas as pd
import pytest

from liveloop.model.text import behaviour_fragments, context_texts_at, item_texts, price_band, user_texts


def _items() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item_id": ["i1", "i2", "i3"],
            "title": ["Red Mug", "Blue Jeans", "Tea Pot"],
            "category": ["kitchen", "fashion", "kitchen"],
            "brand": ["Acme", None, "Potter"],
            "price": [4.5, 59.0, None],
        }
    )


def _events() -> pd.DataFrame:
    t = pd.Timestamp("2026-01-05 10:00")
    rows = [
        ("e1", t, "u1", "i1", "purchase", None, 1.0),
        ("e2", t + pd.Timedelta(hours=1), "u1", "i2", "click", None, None),
        ("e3", t + pd.Timedelta(hours=2), "u1", "i1", "purchase", None, 2.0),
        ("e4", t + pd.Timedelta(hours=3), "u1", "i3", "comment", "love this pot", None),
        ("e5", t + pd.Timedelta(hours=4), "u1", "i3", "impression", None, None),
        ("e6", t + pd.Timedelta(hours=5), "u1", "i2", "purchase", None, -1.0),
        ("e7", t + pd.Timedelta(days=1), "u2", "i3", "add_to_cart", None, 1.0),
    ]
    return pd.DataFrame(rows, columns=["event_id", "ts", "user_id", "item_id", "event_type", "text", "quantity"])


def test_item_text_has_title_category_brand_band_and_latest_room_but_no_id():
    streams = pd.DataFrame(
        {
            "title": ["Morning kitchen deals", "Evening kitchen live"],
            "start": pd.to_datetime(["2026-01-05 08:00", "2026-01-05 20:00"]),
            "item_ids": [["i1", "i3"], ["i1"]],
        }
    )
    texts = item_texts(_items(), streams)
    assert texts["i1"] == "Red Mug | kitchen | Acme | price 3-10 | live: Evening kitchen live"
    assert texts["i2"] == "Blue Jeans | fashion | price 30-100"
    assert texts["i3"] == "Tea Pot | kitchen | Potter | price unknown | live: Morning kitchen deals"
    assert not any(item_id in text for item_id, text in texts.items())


def test_price_bands_are_absolute():
    assert price_band(0.5) == "price 0-1"
    assert price_band(99.0) == "price 30-100"
    assert price_band(5000.0) == "price over 1000"


def test_user_text_newest_first_and_strictly_before():
    ctx = user_texts(_events(), _items(), as_of=pd.Timestamp("2026-01-05 15:30"))
    assert set(ctx) == {"u1"}  # u2 acts only after as_of
    assert ctx["u1"] == "returned: Blue Jeans; said: love this pot; bought: Red Mug; clicked: Blue Jeans; bought: Red Mug"
    assert "impression" not in ctx["u1"] and "e1" not in ctx["u1"] and "u1" not in ctx["u1"]
    # an event exactly at as_of is not "before" it
    at_purchase = user_texts(_events(), _items(), as_of=pd.Timestamp("2026-01-05 12:00"))["u1"]
    assert at_purchase == "clicked: Blue Jeans; bought: Red Mug"


def test_max_events_keeps_the_newest():
    ctx = user_texts(_events(), _items(), max_events=2)
    assert ctx["u1"] == "returned: Blue Jeans; said: love this pot"
    assert ctx["u2"] == "carted: Tea Pot"


def test_vectorised_contexts_match_a_naive_scan():
    events, items = _events(), _items()
    behaviour = behaviour_fragments(events, items)
    queries = [("u1", t) for t in pd.date_range("2026-01-05 09:00", periods=9, freq="1h")] + [
        ("u2", pd.Timestamp("2026-01-07")),
        ("u3", pd.Timestamp("2026-01-07")),
        ("u2", pd.Timestamp("2025-01-01")),
    ]
    got = context_texts_at(behaviour, [q[0] for q in queries], [q[1] for q in queries], max_events=3)
    for (user, t), text in zip(queries, got):
        before = behaviour[(behaviour.user_id == user) & (behaviour.ts < t)]
        expected = "; ".join(before["fragment"].tolist()[-3:][::-1]) or "no history"
        assert text == expected


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match="brand"):
        item_texts(_items().drop(columns=["brand"]))
    with pytest.raises(ValueError, match="event_type"):
        user_texts(_events().drop(columns=["event_type"]), _items())
