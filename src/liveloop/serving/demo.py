"""The live-room demo page, mounted on the BentoML service at /demo (static HTML + JS, no build step, no CDN).

GET /demo/ is the page; GET /demo/world says what it shows: the rooms live now with their products and a few known
users. Everything else the page does goes through the service's own endpoints (/recommend, /feedback, /items), so the
demo shows exactly what a client gets.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).with_name("static")
KNOWN_USERS = 12  # most active users of the packaged history offered in the user picker

demo_app = FastAPI(title="liveloop demo", docs_url=None, redoc_url=None, openapi_url=None)


@demo_app.get("/", include_in_schema=False)
def page() -> FileResponse:
    return FileResponse(STATIC / "demo.html", media_type="text/html")


@demo_app.get("/world")
def world() -> dict:
    """Rooms live now (with their available products), the most active known users, the model and its clock."""
    import bentoml

    state = bentoml.get_current_service().state
    return {"model_version": state.version, "now": str(state.index.now), "rooms": live_rooms(state.index),
            "users": known_users(state.tag)}


def live_rooms(index) -> list[dict]:
    """The live rooms, oldest start first, each with the products recommendable now (catalog order of the room)."""
    import pandas as pd

    streams = index.streams[index.streams["stream_id"].isin(index.live_streams)].sort_values("start")
    rooms = []
    for room in streams.to_dict("records"):
        products = []
        for item_id in room["item_ids"]:
            row = index.row_of.get(item_id)
            if row is None or not index.available[row]:
                continue
            item = index.items.iloc[row]
            products.append({"item_id": item_id, "title": str(item["title"]), "category": str(item["category"]),
                             "price": None if pd.isna(item["price"]) else float(item["price"])})
        rooms.append({"stream_id": room["stream_id"], "title": room["title"], "host_id": room["host_id"],
                      "start": str(room["start"]), "end": str(room["end"]), "products": products})
    return rooms


@lru_cache(maxsize=4)
def known_users(model_tag: str) -> list[dict]:
    """The most active users in the packaged model's history (read once per model)."""
    import bentoml
    import pandas as pd

    from liveloop.serving.package import HISTORY_FILE

    history = pd.read_parquet(Path(bentoml.models.get(model_tag).path) / HISTORY_FILE, columns=["user_id"])
    counts = history["user_id"].astype(str).value_counts()
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:KNOWN_USERS]
    return [{"user_id": u, "events": int(n)} for u, n in top]


demo_app.mount("/static", StaticFiles(directory=STATIC), name="static")
