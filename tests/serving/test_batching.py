"""Dynamic batching: concurrent requests share forward passes, each gets its own rows back."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from polyhead.serving.batching import DynamicBatcher


class Recorder:
    """A stand-in model: probabilities = per-image pixel mean; records each forward pass's size and thread."""

    def __init__(self, gate: threading.Event | None = None):
        self.sizes, self.threads, self.gate = [], set(), gate

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        if self.gate is not None:
            self.gate.wait(30)
        self.sizes.append(len(images))
        self.threads.add(threading.current_thread().name)
        return {"mean": images.reshape(len(images), -1).mean(axis=1, keepdims=True)}


def _images(n: int, value: float) -> np.ndarray:
    return np.full((n, 1, 2, 2), value, dtype=np.float32)


async def _submit_all(batcher, requests):
    try:
        return await asyncio.gather(*(batcher.submit(r) for r in requests))
    finally:
        await batcher.stop()


def test_concurrent_requests_share_one_forward_pass_off_the_event_loop():
    model = Recorder()
    batcher = DynamicBatcher(model, max_batch=32, max_wait_ms=0)
    requests = [_images(n, v) for n, v in [(1, 0.1), (3, 0.2), (2, 0.3), (1, 0.4)]]
    results = asyncio.run(_submit_all(batcher, requests))
    assert model.sizes == [7]  # all four were waiting when the batch formed
    assert model.threads == {"polyhead-model_0"}  # the model ran in the batcher's own thread
    for request, result in zip(requests, results):
        assert result["mean"].shape == (len(request), 1)
        np.testing.assert_allclose(result["mean"][:, 0], request[0, 0, 0, 0])


def test_max_batch_caps_a_pass_and_keeps_requests_whole():
    model = Recorder()
    batcher = DynamicBatcher(model, max_batch=4, max_wait_ms=0)
    requests = [_images(n, n / 10) for n in (3, 2, 1, 4, 1)]
    results = asyncio.run(_submit_all(batcher, requests))
    assert model.sizes == [3, 3, 4, 1]  # 3 | 2+1 (the 4 does not fit) | 4 | 1
    for request, result in zip(requests, results):
        np.testing.assert_allclose(result["mean"][:, 0], request[:, 0, 0, 0])


def test_one_request_larger_than_max_batch_runs_in_chunks():
    model = Recorder()
    batcher = DynamicBatcher(model, max_batch=4, max_wait_ms=0)
    request = np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1)
    (result,) = asyncio.run(_submit_all(batcher, [request]))
    assert model.sizes == [4, 4, 2]
    np.testing.assert_allclose(result["mean"][:, 0], np.arange(10))


def test_max_wait_gathers_a_request_that_arrives_later():
    model = Recorder()
    batcher = DynamicBatcher(model, max_batch=2, max_wait_ms=60_000)  # waits until the batch is full

    async def staggered():
        with batcher.incoming():  # a second request is decoding
            first = asyncio.ensure_future(batcher.submit(_images(1, 0.5)))
            await asyncio.sleep(0.05)  # the batcher is waiting for it by now
            second_images = _images(1, 0.25)
        second = await batcher.submit(second_images)
        return await first, second

    async def run():
        try:
            return await staggered()
        finally:
            await batcher.stop()

    first, second = asyncio.run(run())
    assert model.sizes == [2]
    assert first["mean"][0, 0] == pytest.approx(0.5) and second["mean"][0, 0] == pytest.approx(0.25)


def test_a_lone_request_does_not_wait_for_company():
    model = Recorder()
    batcher = DynamicBatcher(model, max_batch=32, max_wait_ms=3_600_000)  # an hour, if it waited

    async def run():
        try:  # the guard only turns a hang into a failure
            return await asyncio.wait_for(batcher.submit(_images(1, 0.5)), timeout=60)
        finally:
            await batcher.stop()

    assert asyncio.run(run())["mean"][0, 0] == pytest.approx(0.5)
    assert model.sizes == [1]


def test_requests_arriving_during_a_pass_form_the_next_batch():
    gate = threading.Event()
    model = Recorder(gate)
    batcher = DynamicBatcher(model, max_batch=1, max_wait_ms=0)  # batching off: one request per pass

    async def run():
        try:
            tasks = [asyncio.ensure_future(batcher.submit(_images(1, v))) for v in (0.1, 0.2, 0.3)]
            await asyncio.sleep(0.05)
            gate.set()
            return await asyncio.gather(*tasks)
        finally:
            await batcher.stop()

    results = asyncio.run(run())
    assert model.sizes == [1, 1, 1]
    assert [r["mean"][0, 0] for r in results] == pytest.approx([0.1, 0.2, 0.3])


def test_a_failing_model_fails_its_requests_and_the_batcher_goes_on():
    calls = []

    def model(images):
        calls.append(len(images))
        if len(calls) == 1:
            raise RuntimeError("out of memory")
        return {"mean": images.reshape(len(images), -1).mean(axis=1, keepdims=True)}

    batcher = DynamicBatcher(model, max_batch=8, max_wait_ms=0)

    async def run():
        try:
            with pytest.raises(RuntimeError, match="out of memory"):
                await batcher.submit(_images(2, 0.1))
            return await batcher.submit(_images(1, 0.7))
        finally:
            await batcher.stop()

    assert asyncio.run(run())["mean"][0, 0] == pytest.approx(0.7)
