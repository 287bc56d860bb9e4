"""Mixed serving load for locust (headless), against any liveloop deployment:

    LOAD_TOKEN=... LOAD_REQUESTS=10000 locust -f bench/locustfile.py --headless -u 32 -r 32 \
        --host http://127.0.0.1:3000 --only-summary

Each simulated client sends /recommend (known and new users, some with recent events), /feedback (click or
purchase events with ids of its own) and /items (new products and their price changes), weighted 14:5:1. Environment:
  LOAD_REQUESTS   stop after this many requests in all (default: run until --run-time / Ctrl-C)
  LOAD_TOKEN      bearer token for the writes (the deployment's LIVELOOP_API_TOKEN)
  LOAD_ITEMS      comma-separated item ids live in the deployment (default: the test world's i000..i021)
  LOAD_USERS      comma-separated known user ids (default: the test world's u-kitchen-*/u-shoes-*)
  LOAD_RESULT     write {"status": {route: {code: n}}, "acked_event_ids": [...]} here at the end
bench/load.py runs this against a fresh local service with a hot reload half-way and checks the feedback log.
"""

from __future__ import annotations

import itertools
import json
import os
import random
from collections import Counter, defaultdict

import gevent
from locust import FastHttpUser, between, events, task
from locust.exception import StopUser

ITEMS = (os.environ.get("LOAD_ITEMS") or ",".join(f"i{i:03d}" for i in range(22))).split(",")
USERS = (os.environ.get("LOAD_USERS") or ",".join(f"u-{k}-{n}" for k in ("kitchen", "shoes") for n in range(6))).split(",")
LIMIT = int(os.environ.get("LOAD_REQUESTS", "0")) or None
AUTH = {"Authorization": f"Bearer {os.environ['LOAD_TOKEN']}"} if os.environ.get("LOAD_TOKEN") else {}
_status: dict[str, Counter] = defaultdict(Counter)
_acked: list[str] = []
_sent = itertools.count(1)
_ids = itertools.count()
_quits = itertools.count()


@events.request.add_listener
def _count(name, response, exception, **_):
    code = getattr(response, "status_code", None) or 0  # 0: no answer (connection error)
    _status[name][str(code)] += 1


@events.test_stop.add_listener
def _write_result(environment, **_):
    if os.environ.get("LOAD_RESULT"):
        with open(os.environ["LOAD_RESULT"], "w") as out:
            json.dump({"status": {k: dict(v) for k, v in _status.items()}, "acked_event_ids": _acked}, out)


class Shopper(FastHttpUser):
    wait_time = between(0, 0.01)

    def on_start(self) -> None:
        self.added: list[dict] = []

    def _post(self, route: str, body: dict, headers: dict | None = None):
        if LIMIT is not None and next(_sent) > LIMIT:
            if next(_quits) == 0:  # quit from a greenlet of its own: quitting kills this user's greenlet
                gevent.spawn(self.environment.runner.quit)
            raise StopUser()
        return self.client.post(route, json=body, headers=headers)

    @task(14)
    def recommend(self) -> None:
        r = random.random()
        if r < 0.6:
            body = {"user_id": random.choice(USERS), "k": 10}
        elif r < 0.8:
            body = {"user_id": f"load-new-{random.randrange(10**6)}", "k": 5}
        else:
            body = {"user_id": f"load-new-{random.randrange(10**6)}", "k": 10,
                    "recent_events": [{"item_id": random.choice(ITEMS), "event_type": "purchase", "quantity": 1}]}
        self._post("/recommend", body)

    @task(5)
    def feedback(self) -> None:
        user = random.choice(USERS) if random.random() < 0.5 else f"load-fb-{random.randrange(500)}"
        sent = [{"user_id": user, "item_id": random.choice(ITEMS), "event_id": f"load-{os.getpid()}-{next(_ids)}",
                 "event_type": random.choice(["click", "click", "add_to_cart", "purchase"])}
                for _ in range(random.randint(1, 3))]
        response = self._post("/feedback", {"events": sent}, AUTH)
        if response is not None and response.status_code == 200:
            _acked.extend(response.json()["event_ids"])

    @task(1)
    def items(self) -> None:
        """A new product, or a price change of one this client added before."""
        if self.added and random.random() < 0.5:
            item = {**random.choice(self.added), "price": round(random.uniform(4, 30), 2)}
        else:
            n = next(_ids)
            item = {"item_id": f"load-item-{os.getpid()}-{n}", "title": f"Travel Mug {n}", "category": "kitchen",
                    "price": 12.0 + n % 7}
            self.added.append(item)
        self._post("/items", {"items": [item]}, AUTH)
