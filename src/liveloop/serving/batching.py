"""Adaptive batching of user-tower encodes, counted in rows.

While one batch runs, new requests queue; when it finishes the next batch takes everything queued, up to
`max_rows` rows. At low load a request is encoded alone at once (no waiting window); under load batches grow by
themselves. BentoML's own @api(batchable=True) batches whole HTTP requests to one endpoint, caps requests rather
than rows, and sheds load with 503 when its latency target is missed, so the service batches here instead.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Callable

import numpy as np


class EncodeBatcher:
    def __init__(self, encode: Callable[[list[str]], np.ndarray], max_rows: int):
        self._encode = encode
        self.max_rows = max_rows
        self._pending: deque[tuple[list[str], asyncio.Future]] = deque()
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self.batches = 0  # encodes run, for tests and benchmarks
        self.rows = 0

    async def encode(self, texts: list[str]) -> np.ndarray:
        """[len(texts), d] vectors; shares one encode call with whatever else is waiting."""
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done():
            self._loop, self._wake = loop, asyncio.Event()
            self._worker = loop.create_task(self._run())
        future = loop.create_future()
        self._pending.append((texts, future))
        self._wake.set()
        return await future

    def _take_batch(self) -> list[tuple[list[str], asyncio.Future]]:
        jobs = [self._pending.popleft()]
        rows = len(jobs[0][0])
        while self._pending and rows + len(self._pending[0][0]) <= self.max_rows:
            jobs.append(self._pending.popleft())
            rows += len(jobs[-1][0])
        return jobs

    async def _run(self) -> None:
        while True:
            if not self._pending:
                if self._closed:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            jobs = self._take_batch()
            texts = [t for job_texts, _ in jobs for t in job_texts]
            try:
                vectors = await asyncio.to_thread(self._encode, texts)
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request, which turns it into a 5xx
                for _, future in jobs:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.batches += 1
            self.rows += len(texts)
            start = 0
            for job_texts, future in jobs:
                if not future.done():
                    future.set_result(vectors[start : start + len(job_texts)])
                start += len(job_texts)

    def close(self) -> None:
        """Let the worker finish what is queued, then stop; callable from any thread."""
        self._closed = True
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)
