"""Dynamic batching: concurrent requests share one forward pass.

Each request submits its images (float32 [n, C, H, W]); one task gathers the waiting requests
into a batch of at most `max_batch` images, runs the model once in a dedicated thread (so the
event loop keeps accepting requests) and hands each request its own rows back.

Gathering: everything already queued joins at once; then, while the batch is short of
`max_batch` and requests are on their way (announced with `incoming()` while they decode),
the batcher waits up to `max_wait_ms` after the first request for them. A lone request runs
at once: nothing is worth waiting for. While a batch runs, new requests queue up and form the
next batch, so under load batches fill even with `max_wait_ms=0`. A request never shares a
pass with another when it holds `max_batch` images or more (`max_batch=1` turns batching off
for one-image requests); one larger than `max_batch` runs in several passes.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

Probabilities = dict[str, np.ndarray]  # {task: float32 [B, K]}


@dataclass
class _Item:
    images: np.ndarray  # float32 [n, C, H, W]
    future: asyncio.Future = field(repr=False)


class DynamicBatcher:
    """`await batcher.submit(images)` -> {task: float32 [n, K]} for those n images.

    `model` runs in one worker thread, never two batches at once. `on_batch(size)` is called
    with the number of images in each forward pass (metrics)."""

    def __init__(self, model: Callable[[np.ndarray], Probabilities], *, max_batch: int = 32,
                 max_wait_ms: float = 5.0, on_batch: Callable[[int], None] | None = None):
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError(f"max_batch must be >= 1 and max_wait_ms >= 0, got {max_batch}, {max_wait_ms}")
        self.model, self.max_batch, self.max_wait = model, max_batch, max_wait_ms / 1000.0
        self.on_batch = on_batch
        self._queue: asyncio.Queue[_Item] | None = None
        self._carry: _Item | None = None  # a request that did not fit into the previous batch
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._incoming = 0  # requests announced by incoming() that have not submitted yet

    @contextmanager
    def incoming(self):
        """Announce a request that will submit soon (it is decoding): a forming batch waits for it."""
        self._incoming += 1
        try:
            yield
        finally:
            self._incoming -= 1

    async def submit(self, images: np.ndarray) -> Probabilities:
        if self._task is None or self._task.get_loop() is not asyncio.get_running_loop():
            self.start()  # first use, or a new event loop (e.g. a test client that opens one per call)
        item = _Item(images, asyncio.get_running_loop().create_future())
        await self._queue.put(item)
        return await item.future

    def start(self) -> None:
        """Start the gathering task on the running event loop (done by the first `submit`)."""
        self._queue, self._carry = asyncio.Queue(), None
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="polyhead-model")
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="polyhead-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = await self._gather(loop)
            images = np.concatenate([it.images for it in items]) if len(items) > 1 else items[0].images
            try:
                probs = await loop.run_in_executor(self._executor, self._run, images)
            except Exception as exc:  # a model failure fails this batch's requests, not the server
                for it in items:
                    if not it.future.done():
                        it.future.set_exception(exc)
                continue
            start = 0
            for it in items:
                n = len(it.images)
                if not it.future.done():  # the client may have gone away
                    it.future.set_result({task: p[start:start + n] for task, p in probs.items()})
                start += n

    async def _gather(self, loop: asyncio.AbstractEventLoop) -> list[_Item]:
        first = self._carry or await self._queue.get()
        self._carry = None
        items, size = [first], len(first.images)
        deadline = loop.time() + self.max_wait
        while size < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                timeout = deadline - loop.time()
                if timeout <= 0 or self._incoming == 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), timeout)
                except asyncio.TimeoutError:
                    break
            if size + len(item.images) > self.max_batch:
                self._carry = item  # first in the next batch
                break
            items.append(item)
            size += len(item.images)
        return items

    def _run(self, images: np.ndarray) -> Probabilities:
        """The model over `images` in chunks of at most max_batch (one request may be larger)."""
        parts: list[Probabilities] = []
        for start in range(0, len(images), self.max_batch):
            chunk = images[start:start + self.max_batch]
            if self.on_batch is not None:
                self.on_batch(len(chunk))
            parts.append(self.model(chunk))
        if len(parts) == 1:
            return parts[0]
        return {task: np.concatenate([p[task] for p in parts]) for task in parts[0]}
