"""The batched writer behind the usage and route-decision recorders (app/batching.py): batches
of `batch_max` off the loop, a failed write keeps its batch for the next try, the oldest are
dropped past `max_pending`, and `stop` writes what is still pending."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from app.batching import BatchWriter

log = logging.getLogger("test.batching")


class FlakySink:
    """Collects written batches; fails the next `fail` writes. Records the writing thread."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.batches: list[list[int]] = []
        self.threads: set[int] = set()

    def write(self, batch: list[int]) -> None:
        self.threads.add(threading.get_ident())
        if self.fail:
            self.fail -= 1
            raise ConnectionError("database away")
        self.batches.append(list(batch))


def writer(sink: FlakySink, **kw) -> BatchWriter[int]:
    opts = {"interval_s": 0.01, "batch_max": 3, "max_pending": 100, "what": "numbers", "log": log}
    return BatchWriter(sink.write, **{**opts, **kw})


def test_flush_writes_in_batches_off_the_event_loop():
    sink = FlakySink()

    async def run() -> bool:
        w = writer(sink, interval_s=60)  # the periodic task sleeps; the explicit flush writes
        for i in range(7):
            w.add(i)
        ok = await w.flush()
        assert w.pending == 0
        await w.stop()
        return ok

    assert asyncio.run(run()) is True
    assert sink.batches == [[0, 1, 2], [3, 4, 5], [6]]
    assert threading.get_ident() not in sink.threads  # written in a worker thread


def test_a_failed_write_keeps_the_batch_and_the_next_flush_retries_it(caplog):
    sink = FlakySink(fail=1)

    async def run() -> tuple[bool, int, bool]:
        w = writer(sink, interval_s=60)
        for i in range(4):
            w.add(i)
        first = await w.flush()
        kept = w.pending
        return first, kept, await w.flush()

    with caplog.at_level(logging.WARNING, logger="test.batching"):
        first, kept, second = asyncio.run(run())
    assert first is False and kept == 4  # nothing lost: the failed batch and the rest stay
    assert second is True and sink.batches == [[0, 1, 2], [3]]
    assert "numbers not written yet (ConnectionError); will retry" in caplog.text


def test_the_background_task_writes_without_a_flush_call_and_retries():
    sink = FlakySink(fail=2)

    async def run() -> int:
        w = writer(sink)
        w.add(1)
        w.add(2)
        for _ in range(200):  # two failed tries, then the write lands
            await asyncio.sleep(0.01)
            if not w.pending:
                break
        return w.pending

    assert asyncio.run(run()) == 0
    assert sink.batches == [[1, 2]]


def test_the_oldest_are_dropped_past_max_pending():
    sink = FlakySink()

    async def run() -> None:
        w = writer(sink, interval_s=60, max_pending=5, batch_max=10)
        for i in range(8):
            w.add(i)
        assert w.pending == 5
        await w.stop()

    asyncio.run(run())
    assert sink.batches == [[3, 4, 5, 6, 7]]


def test_stop_flushes_what_is_pending_and_ends_the_writer_task():
    sink = FlakySink()

    async def run() -> tuple[bool, int]:
        w = writer(sink, interval_s=60)  # the periodic flush would not come for a minute
        for i in range(5):
            w.add(i)
        ok = await w.stop()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        return ok, len(tasks)

    ok, others = asyncio.run(run())
    assert ok is True and others == 0
    assert sink.batches == [[0, 1, 2], [3, 4]]


def test_stop_while_a_write_is_in_flight_does_not_write_the_batch_twice():
    started, release = threading.Event(), threading.Event()
    batches: list[list[int]] = []

    def slow_write(batch: list[int]) -> None:
        started.set()
        release.wait(5)
        batches.append(list(batch))

    async def run() -> None:
        w = BatchWriter(slow_write, interval_s=0.01, batch_max=10, max_pending=100, what="n", log=log)
        w.add(1)
        await asyncio.to_thread(started.wait, 5)  # the background task is inside the write
        w.add(2)
        stopping = asyncio.ensure_future(w.stop())
        await asyncio.sleep(0.05)
        release.set()
        assert await stopping is True

    asyncio.run(run())
    assert batches == [[1], [2]]


def test_overflow_during_a_write_drops_only_unwritten_oldest_and_loses_nothing_written():
    # A long outage: a write is in flight while `add` overflows max_pending. The old cleanup
    # (delete the first len(batch) after the write) then removed records never written.
    started, release = threading.Event(), threading.Event()
    written: list[list[int]] = []

    def slow_write(batch: list[int]) -> None:
        started.set()
        release.wait(5)
        written.append(list(batch))

    async def run() -> list[int]:
        w = BatchWriter(slow_write, interval_s=60, batch_max=2, max_pending=4, what="n", log=log)
        for i in range(4):
            w.add(i)
        flushing = asyncio.ensure_future(w.flush())
        await asyncio.to_thread(started.wait, 5)  # [0, 1] is being written
        for i in range(4, 9):  # overflow while it is
            w.add(i)
        release.set()
        assert await flushing is True
        await w.stop()
        return [x for b in written for x in b]

    got = asyncio.run(run())
    assert got[:2] == [0, 1]
    assert got[2:] == [5, 6, 7, 8]  # the newest max_pending; 2, 3, 4 dropped as the oldest


def test_a_failed_batch_goes_back_in_front_and_the_oldest_are_dropped_past_max_pending():
    started, release = threading.Event(), threading.Event()
    sink = FlakySink()

    def failing_write(batch: list[int]) -> None:
        started.set()
        release.wait(5)
        raise ConnectionError("database away")

    async def run() -> tuple[bool, int]:
        w = BatchWriter(failing_write, interval_s=60, batch_max=2, max_pending=4, what="n", log=log)
        for i in range(4):
            w.add(i)
        flushing = asyncio.ensure_future(w.flush())
        await asyncio.to_thread(started.wait, 5)  # [0, 1] is in flight, [2, 3] pending
        for i in range(4, 6):
            w.add(i)  # pending [2, 3, 4, 5]: full
        assert w.pending == 6  # the batch in flight counts as not written
        release.set()
        ok = await flushing
        kept = w.pending
        w._write = sink.write  # the database is back
        await w.stop()
        return ok, kept

    ok, kept = asyncio.run(run())
    assert ok is False and kept == 4
    assert sink.batches == [[2, 3], [4, 5]]  # [0, 1] back in front, then dropped as the oldest


def test_close_writes_what_is_pending():
    sink = FlakySink()

    async def run() -> bool:
        w = writer(sink, interval_s=60)
        for i in range(4):
            w.add(i)
        return await w.close(2.0)

    assert asyncio.run(run()) is True
    assert sink.batches == [[0, 1, 2], [3]]


def test_close_gives_up_after_its_timeout_when_the_database_hangs(caplog):
    release = threading.Event()

    def hanging_write(batch: list[int]) -> None:
        release.wait(5)

    async def run() -> tuple[bool, float]:
        w = BatchWriter(hanging_write, interval_s=60, batch_max=2, max_pending=100, what="n", log=log)
        for i in range(5):
            w.add(i)
        t0 = time.monotonic()
        ok = await w.close(0.2)
        took = time.monotonic() - t0
        release.set()
        return ok, took

    with caplog.at_level(logging.WARNING, logger="test.batching"):
        ok, took = asyncio.run(run())
    assert ok is False and took < 1.0  # shutdown is not held up by the database
    assert "n: 3 not written at shutdown" in caplog.text  # the 2 cut off may still land


def test_close_counts_what_a_failed_final_flush_loses(caplog):
    sink = FlakySink(fail=1)

    async def run() -> bool:
        w = writer(sink, interval_s=60)
        for i in range(4):
            w.add(i)
        return await w.close(2.0)

    with caplog.at_level(logging.WARNING, logger="test.batching"):
        assert asyncio.run(run()) is False
    assert "numbers: 4 not written at shutdown" in caplog.text
