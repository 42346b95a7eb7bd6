"""The tier's stream coalescing: first chunk alone, then batches, errors and cancellation."""

from __future__ import annotations

import asyncio

import pytest

from deployments.tier import coalesce, load_scaled_window


async def _ticks(n: int, gap_s: float, log: list[str] | None = None):
    try:
        for i in range(n):
            if i:
                await asyncio.sleep(gap_s)
            yield f"t{i}"
    finally:
        if log is not None:
            log.append("closed")


async def _collect(gen):
    return [batch async for batch in gen]


def test_first_item_alone_then_coalesced():
    batches = asyncio.run(_collect(coalesce(_ticks(20, 0.001), window_s=0.05)))
    assert batches[0] == ["t0"]
    assert [x for b in batches for x in b] == [f"t{i}" for i in range(20)]
    assert len(batches) < 20  # the later items were grouped


def test_zero_window_still_delivers_everything_in_order():
    batches = asyncio.run(_collect(coalesce(_ticks(5, 0.01), window_s=0)))
    assert [x for b in batches for x in b] == ["t0", "t1", "t2", "t3", "t4"]


def test_error_from_engine_reaches_consumer():
    async def boom():
        yield "a"
        raise RuntimeError("engine died")

    async def run():
        out = []
        with pytest.raises(RuntimeError, match="engine died"):
            async for batch in coalesce(boom(), window_s=0.01):
                out.append(batch)
        return out

    assert asyncio.run(run()) == [["a"]]


def test_consumer_cancel_closes_the_engine_stream():
    log: list[str] = []

    async def run():
        gen = coalesce(_ticks(1000, 0.01, log), window_s=0.001)
        assert await gen.__anext__() == ["t0"]
        await gen.aclose()
        await asyncio.sleep(0.05)

    asyncio.run(run())
    assert log == ["closed"]


def test_window_is_read_per_batch():
    calls: list[int] = []

    def window() -> float:
        calls.append(1)
        return 0.02

    batches = asyncio.run(_collect(coalesce(_ticks(30, 0.002), window_s=window)))
    assert [x for b in batches for x in b] == [f"t{i}" for i in range(30)]
    # Never for the first batch, at most once for each other (not for a batch the stream's end
    # completed), and so far fewer times than items.
    assert 1 <= len(calls) <= len(batches) - 1 < 29


def test_stream_end_does_not_wait_out_the_window():
    async def run() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await _collect(coalesce(_ticks(3, 0.001), window_s=5.0))
        return loop.time() - start

    assert asyncio.run(run()) < 1.0


def test_load_scaled_window_grows_with_streams_up_to_the_cap():
    streams = [1]
    window = load_scaled_window(0.025, 0.1, lambda: streams[0], streams_per_base=8)
    assert window() == pytest.approx(0.025)
    streams[0] = 16
    assert window() == pytest.approx(0.05)
    streams[0] = 64
    assert window() == pytest.approx(0.1)
