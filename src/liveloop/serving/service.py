"""BentoML service: `bentoml serve liveloop.serving.service:LiveRecommender`.

Config comes from LIVELOOP_PARAMS (default ./params.yaml; without either, the serve config packaged with the
model and the current folder as workspace). One worker process: the user state, the feedback writer and the item
catalog live in its memory, so the very next request sees feedback and upserts. Heavy work happens in __init__.
Endpoints: POST /recommend, /score, /feedback, /items; GET /v1/ready; BentoML's /healthz, /readyz, /metrics;
the demo page at /demo/ (serving/demo.py).
Bodies are bounded like the gate's tables (validation.limits); guard.py answers bad content types, oversized
bodies and writes without the token (LIVELOOP_API_TOKEN) before BentoML parses anything.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

import bentoml
import pandas as pd
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from liveloop.data.schema import EVENT_TYPES
from liveloop.serving.demo import demo_app
from liveloop.serving.gpu import service_resources
from liveloop.serving.guard import RequestGuard, check_bind
from liveloop.serving.package import MODEL_NAME
from liveloop.validation.limits import MAX_PRICE, MAX_QUANTITY, time_problem

logger = logging.getLogger("liveloop.serving")
status_app = FastAPI(title="liveloop status")

FUTURE_SLACK = pd.Timedelta(days=1)  # a client clock further ahead than this is wrong, not early


def _time_in_range(value: datetime) -> datetime:
    """A time pandas can hold (as UTC, ns), not before 1970 and not ahead of the wall clock by more than a day."""
    ts = pd.Timestamp(value)
    ts = ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts
    problem = time_problem(ts)
    if problem is None and ts > pd.Timestamp.now("UTC").tz_localize(None) + FUTURE_SLACK:
        problem = f"{ts.isoformat()} is more than {FUTURE_SLACK} ahead of the wall clock (UTC)"
    if problem:
        raise ValueError(problem)
    return value


def _nonzero(value: float) -> float:
    if value == 0:
        raise ValueError("quantity 0 means no units: leave it out or send the units (negative: a cancellation)")
    return value


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError("Input should be greater than 0")
    return value


Id = Annotated[str, Field(min_length=1, max_length=200)]
Text = Annotated[str, Field(min_length=1, max_length=2000)]  # the gate rejects empty texts: so does the API
Time = Annotated[datetime, AfterValidator(_time_in_range)]
# Bounds as minimum/maximum plus a validator for "not 0": BentoML labels its schema OpenAPI 3.0, where pydantic's
# numeric exclusiveMinimum (from gt=0) is invalid and breaks OpenAPI clients and fuzzers.
Price = Annotated[float, Field(ge=0, le=MAX_PRICE, allow_inf_nan=False, description="greater than 0"),
                  AfterValidator(_positive)]  # the gate's bounds (validation.limits)
Quantity = Annotated[float, Field(ge=-MAX_QUANTITY, le=MAX_QUANTITY, allow_inf_nan=False, description="not 0"),
                     AfterValidator(_nonzero)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecentEvent(_Strict):
    item_id: Id
    event_type: Literal[EVENT_TYPES]  # type: ignore[valid-type]
    ts: Time | None = None
    stream_id: Id | None = None
    text: Text | None = None
    quantity: Quantity | None = None
    price: Price | None = None

    @model_validator(mode="after")
    def _comment_has_text(self):
        if self.event_type == "comment" and self.text is None:
            raise ValueError("a comment event needs its text")
        return self


class FeedbackEvent(RecentEvent):
    user_id: Id
    event_id: Id | None = None


class ItemUpsert(_Strict):
    item_id: Id
    title: Annotated[str, Field(min_length=1, max_length=500)]
    category: Annotated[str, Field(min_length=1, max_length=200)]
    brand: Text | None = None
    description: Text | None = None
    price: Price
    first_seen: Time | None = None
    stream_id: Id | None = Field(None, description="live room the product is shown in")
    available: bool = Field(True, description="recommendable now, whatever the room windows say")


def _settings(model_path: Path | None = None):
    """(Config, Workspace) from LIVELOOP_PARAMS / ./params.yaml, else the config packaged with the model."""
    import json

    from liveloop.config import Config, ServeConfig
    from liveloop.serving.package import PACKAGE_FILE
    from liveloop.workspace import Workspace, open_workspace

    path = Path(os.environ.get("LIVELOOP_PARAMS", "params.yaml"))
    if path.exists():
        return open_workspace(path)
    if "LIVELOOP_PARAMS" in os.environ or model_path is None:
        raise FileNotFoundError(f"LIVELOOP_PARAMS names {path}, which does not exist")
    packaged = json.loads((model_path / PACKAGE_FILE).read_text())["serve"]
    retired = sorted(set(packaged) - set(ServeConfig.model_fields))
    if retired:  # a package built by an older liveloop: settings since removed are ignored, not fatal
        logger.warning("ignoring serve settings this version no longer has: %s", ", ".join(retired))
    cfg = Config(serve=ServeConfig.model_validate({k: v for k, v in packaged.items() if k not in retired}))
    cfg.paths = cfg.paths.resolve(Path.cwd())
    ws = Workspace.from_config(cfg)
    return cfg, ws


def _bad_request(exc: Exception) -> JSONResponse:
    """400 {"error": ...}; returned, not raised, since BentoML wraps a raised InvalidArgument's body in a list."""
    return JSONResponse({"error": str(exc)}, status_code=400)


@bentoml.service(name="liveloop", workers=1, resources=service_resources(),  # one GPU in a serve.gpu bento
                 traffic={"timeout": 60, "max_concurrency": 512})
@bentoml.asgi_app(status_app, path="/v1")
class LiveRecommender:
    model_ref = bentoml.models.BentoModel(f"{MODEL_NAME}:latest")

    def __init__(self) -> None:
        from liveloop.serving.engine import load_state
        from liveloop.serving.feedback import FeedbackLog, log_path

        try:
            stored = self.model_ref
        except bentoml.exceptions.BentoMLException:
            home = os.environ.get("BENTOML_HOME", "~/bentoml")
            raise RuntimeError(f"no packaged model {MODEL_NAME!r} in BENTOML_HOME={home}: run `liveloop package` first") from None
        cfg, ws = _settings(Path(stored.path))
        self.serve_cfg = cfg.serve
        if cfg.serve.torch_threads:
            import torch

            torch.set_num_threads(cfg.serve.torch_threads)
        self.feedback_log = FeedbackLog(log_path(ws))
        self.state = load_state(stored.path, str(stored.tag), self.serve_cfg)
        self._swap_lock = threading.Lock()  # feedback, upserts and model swaps, one at a time
        self._session_items: list[dict] = []  # /items upserts, re-applied (re-embedded) after a model swap
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="liveloop-reload", daemon=True)
        self._poller.start()
        logger.info("serving %s (%s), %d live items", self.state.version, self.state.tag, self.state.index.n_live)

    @bentoml.on_deployment
    def _refuse_open_writes() -> None:
        """Before any worker starts: no binding beyond loopback unless writes need a token (guard.check_bind)."""
        check_bind()

    def __is_ready__(self) -> bool:
        return getattr(self, "state", None) is not None

    # ----- hot reload -----
    def _poll(self) -> None:
        while not self._stop.wait(self.serve_cfg.reload_poll_seconds):
            try:
                self.reload_if_newer()
            except Exception:  # keep serving the current model; the log says why the new one did not load
                logger.exception("hot reload failed; still serving %s", self.state.tag)

    def reload_if_newer(self) -> bool:
        """Load the newest packaged model off to the side, carry session state over, swap one reference."""
        from liveloop.serving.engine import load_state, take_behaviour, upsert_items
        from liveloop.serving.index import resolve_now

        latest = bentoml.models.get(f"{MODEL_NAME}:latest")
        if str(latest.tag) == self.state.tag:
            if self.serve_cfg.now is None:  # wall clock: rooms open and close
                with self._swap_lock:
                    self.state.index = self.state.index.at(resolve_now(None, self.state.index.streams))
            return False
        fresh = load_state(latest.path, str(latest.tag), self.serve_cfg)
        with self._swap_lock:
            old = self.state
            take_behaviour(fresh, old.users.feedback_events())
            if self._session_items:
                upsert_items(fresh, None, self._session_items)
            self.state = fresh
        old.batcher.close()
        logger.info("hot reload: now serving %s (%s)", fresh.version, fresh.tag)
        return True

    @bentoml.on_shutdown
    def _shutdown(self) -> None:
        self._stop.set()

    # ----- endpoints -----
    @status_app.get("/ready")
    def ready(self) -> dict:
        """Readiness with what is loaded: model version, store tag, catalog and live item counts."""
        state = self.state
        return {"ready": True, "model_version": state.version, "model_tag": state.tag,
                "items": len(state.index.items), "live_items": state.index.n_live, "now": str(state.index.now),
                "encode_batches": state.batcher.batches, "encode_rows": state.batcher.rows}

    @bentoml.api(route="/recommend")
    async def recommend(
        self,
        user_id: Id,
        k: Annotated[int, Field(description="number of items, 1..serve.max_k", json_schema_extra={"minimum": 1}),
                     AfterValidator(_positive)] = 10,
        stream_id: Id | None = None,
        recent_events: Annotated[list[RecentEvent] | None, Field(min_length=1)] = None,
    ) -> dict:
        """Top-k items live now, each with a score and a reason; cold start for unknown users."""
        from liveloop.serving.engine import RequestError, recommend

        events = [e.model_dump() for e in recent_events] if recent_events else None
        try:
            return await recommend(self.state, user_id, k, stream_id, events)
        except RequestError as exc:
            return _bad_request(exc)

    @bentoml.api(route="/score")
    async def score(self, user_id: Id, item_ids: Annotated[list[Id], Field(min_length=1)]) -> dict:
        """CTR probabilities from the CTR head for the given items."""
        from liveloop.serving.engine import RequestError, score

        try:
            return await score(self.state, user_id, item_ids)
        except RequestError as exc:
            return _bad_request(exc)

    @bentoml.api(route="/feedback")
    async def feedback(self, events: Annotated[list[FeedbackEvent], Field(min_length=1)]) -> dict:
        """Append events durably to the feedback log (the loop's next batch); the next /recommend reflects them."""
        from liveloop.serving.engine import RequestError, add_feedback

        def write() -> dict:
            with self._swap_lock:
                return add_feedback(self.state, self.feedback_log, [e.model_dump() for e in events])

        try:
            return await asyncio.to_thread(write)
        except RequestError as exc:
            return _bad_request(exc)

    @bentoml.api(route="/items")
    async def items(self, items: Annotated[list[ItemUpsert], Field(min_length=1)]) -> dict:
        """Upsert products and availability; new products are embedded now and recommendable at once."""
        from liveloop.serving.engine import RequestError, upsert_items

        records = [i.model_dump() for i in items]

        def write() -> dict:
            with self._swap_lock:
                result = upsert_items(self.state, self.feedback_log, records)
                self._session_items.extend(records)
                return result

        try:
            return await asyncio.to_thread(write)
        except RequestError as exc:
            return _bad_request(exc)


LiveRecommender.add_asgi_middleware(RequestGuard)
LiveRecommender.mount_asgi_app(demo_app, path="/demo")  # the live-room demo page (serving/demo.py)
